import os

import pytest
import torch
import torch.nn.functional as F

import train
from vita_mini.config import LLMConfig
from vita_mini.data.samples import text_sample
from vita_mini.vocab import IGNORE
from vita_mini.errors import VitaError
from vita_mini.infer.decode import greedy_generate
from vita_mini.model.llm import LLM
from vita_mini.checkpoint import load_checkpoint, save_checkpoint
from vita_mini.model.teacher_forced import head_cross_entropy, lm_loss
from vita_mini.runs import load_speech_lm
from vita_mini.data.samples import pack
from vita_mini.vocab import END, vocab_size


def test_head_cross_entropy_equals_the_plain_masked_loss():
    """The head on labelled positions only: same value and same gradients as the head on every
    position with ignore_index."""
    torch.manual_seed(0)
    model = LLM(LLMConfig(d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=48, max_seq_len=64), 40)
    hidden = torch.randn(2, 12, 32)
    labels = torch.randint(0, 40, (2, 12))
    labels[0, :5] = IGNORE
    labels[1, 9:] = IGNORE
    fast = head_cross_entropy(model, hidden, labels)
    (fast_grad,) = torch.autograd.grad(fast, model.lm_head.weight)
    plain = F.cross_entropy(model.lm_head(hidden).flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    (plain_grad,) = torch.autograd.grad(plain, model.lm_head.weight)
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(fast_grad, plain_grad)


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, copy_tiny_run):
    """`train.py --stage 1` on a run folder with the session's tiny stage 0 (building a missing
    stage first is tested with stage 3, tests/test_mctp_stages.py)."""
    run = tmp_path_factory.mktemp("stage1")
    copy_tiny_run(run, (0,))
    args = ["--stage", "1", "--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"),
            f"cache_dir={run / 'cache'}"]
    assert train.main(args) == 0
    return run, args


def test_stage1_trains_and_reports(stage1_run, capsys):
    run, _ = stage1_run
    for stage in ("stage0", "stage1"):
        assert load_checkpoint(str(run / "run" / stage / "checkpoint.pt"))["finished"]
    metrics = (run / "run" / "stage1" / "metrics.json").read_text()
    for key in ("asr_cer", "tts_judge_cer", "text_qa_accuracy"):
        assert key in metrics


def test_eval_on_demand(stage1_run, capsys):
    _, args = stage1_run
    assert train.main([*args, "--eval"]) == 0
    assert "ASR CER" in capsys.readouterr().out


def test_stage1_checkpoint_loads_strictly(stage1_run, tmp_path):
    run, _ = stage1_run
    from vita_mini.config import get_config
    cfg = get_config("tiny")
    cfg.run_dir = str(run / "run")
    model, _ = load_speech_lm(cfg, 1)
    assert isinstance(model, LLM)
    payload = load_checkpoint(str(run / "run" / "stage1" / "checkpoint.pt"))
    payload["model"]["lm_head.weight"] = payload["model"]["lm_head.weight"][:-1]  # wrong shape
    cfg.run_dir = str(tmp_path)
    save_checkpoint(str(tmp_path / "stage1" / "checkpoint.pt"), payload)
    with pytest.raises(VitaError, match="does not fit the model"):
        load_speech_lm(cfg, 1)
    cfg.llm.d_model = 32
    with pytest.raises(VitaError, match="llm.d_model: 64 -> 32"):
        load_speech_lm(cfg, 1)


def test_missing_stage0_checkpoint_for_llm_tasks(tmp_path):
    import generate
    with pytest.raises(VitaError, match="no stage 0 checkpoint"):
        generate.main(["--task", "tts", "--text", "ana", "--out", str(tmp_path / "x.wav"),
                       "--preset", "tiny", "--run-dir", str(tmp_path / "none")])
    assert not os.path.exists(tmp_path / "x.wav")


def test_prompt_errors(tiny_cfg):
    model = LLM(tiny_cfg.llm, vocab_size(tiny_cfg.codec.codebook_size))
    with pytest.raises(VitaError, match="the prompt is empty"):
        greedy_generate(model, [], 5)
    with pytest.raises(VitaError, match="too long for llm.max_seq_len=256"):
        greedy_generate(model, [1] * 300, 5)


def test_greedy_generate_matches_argmax_of_full_forward(tiny_cfg):
    model = LLM(tiny_cfg.llm, vocab_size(tiny_cfg.codec.codebook_size)).eval()
    prompt = [5, 6, 7, 8]
    out = greedy_generate(model, prompt, 6, stop=-1)
    seq = list(prompt)
    for _ in range(6):  # the slow way: a full forward over the whole sequence every step
        logits, _ = model(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert out == seq[len(prompt):]


def test_tiny_llm_overfits_one_packed_batch_of_chat_samples(tiny_cfg):
    torch.manual_seed(0)
    model = LLM(tiny_cfg.llm, vocab_size(tiny_cfg.codec.codebook_size))
    samples = [text_sample("where does ana live", "ana lives in rome"),
               text_sample("what pet does bob have", "bob has a cat")]
    batch = pack(samples, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = lm_loss(model, batch.tokens, batch.labels, batch.doc_ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    from vita_mini.vocab import TEXT_INSTRUCTION, decode_text, prompt_tokens, text_ids
    answer = greedy_generate(model.eval(), prompt_tokens(TEXT_INSTRUCTION, text_ids("where does ana live")), 30)
    assert decode_text(answer) == "ana lives in rome" and answer[-1] == END

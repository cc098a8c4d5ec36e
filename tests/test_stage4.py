"""Stage 4 (spoken QA fine-tuning): its data, loss masks, learning-rate groups, gradients,
checkpoint and report, and `train.py --stage all` resuming where it stopped."""

import json
import os
import re
from types import SimpleNamespace

import pytest
import torch

import train
from vita_mini.config import get_config
from vita_mini.data.corpus import make_world
from vita_mini.data.samples import pack
from vita_mini.vocab import IGNORE
from vita_mini.data.spoken_qa import (SpokenQAData, answer_is_right, load_spoken_qa_corpus, question_voices,
                                      spoken_answer_sample)
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.checkpoint import load_checkpoint
from vita_mini.train.loop import make_optimizer
from vita_mini.model.teacher_forced import mctp_losses
from vita_mini.runs import load_speech_lm
from vita_mini.train.stage4 import SFTData, Stage4Task, sft_losses
from vita_mini.vocab import (ASSISTANT, BOA, END, EOA, SPOKEN_ANSWER_INSTRUCTION, audio_ids, prompt_tokens,
                             text_ids, user_audio, vocab_size)


def test_only_the_spoken_answer_carries_loss_and_it_follows_the_ratio():
    question, codes = [5, 6, 7, 8], list(range(20))
    sample = spoken_answer_sample(user_audio(question), "ana lives", codes, (1, 10, 4, 10))
    prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, user_audio(question))
    assert sample.ids[:len(prompt)] == prompt and prompt[-1] == ASSISTANT
    assert not any(sample.target[:len(prompt)]) and all(sample.target[len(prompt):])
    a = audio_ids(codes)
    # 1 text token, BOA, 8 codes, EOA; then 4 text, BOA, 8 codes, EOA; then the rest of both; END
    assert sample.ids[len(prompt):] == (text_ids("a") + [BOA] + a[:8] + [EOA] + text_ids("na l") + [BOA]
                                         + a[8:16] + [EOA] + text_ids("ives") + [BOA] + a[16:] + [EOA] + [END])
    batch = pack([sample], 128)  # labels[i] = ids[i + 1] exactly where that is an answer token
    labelled = [int(x) for x in batch.labels[0] if x != IGNORE]
    assert labelled == sample.ids[len(prompt):]


def test_question_voices_keep_one_voice_for_the_test():
    for q in ("where does ana live", "what pet does bob have", "what food does eva eat"):
        train_voices, test_voice = question_voices(q, 4, 2)
        assert len(set(train_voices)) == 2 and test_voice not in train_voices
        assert question_voices(q, 4, 2) == (train_voices, test_voice)  # deterministic


def test_answer_is_right_needs_the_whole_word():
    assert answer_is_right("rome", "ana lives in rome")
    assert not answer_is_right("rome", "ana lives in romeo")
    assert not answer_is_right("rome", "")


def test_learning_rate_groups_mctp_at_ten_times_the_llm():
    cfg = get_config("tiny")
    llm, mctp = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size)), MCTP(cfg.llm, 3)
    llm.requires_grad_(False)  # as stage 3 leaves it: stage 4 must train it again
    task = Stage4Task(cfg, SimpleNamespace(order=[0]), llm, mctp)
    optimizer = make_optimizer(task, cfg.stage4)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert all(p.requires_grad for p in task.model.parameters())
    assert len(group_of) == sum(1 for _ in task.model.parameters())  # every tensor, once
    for p in llm.parameters():
        assert group_of[id(p)]["lr"] == pytest.approx(cfg.stage4.lr)
    for p in mctp.parameters():
        assert group_of[id(p)]["lr"] == pytest.approx(10 * cfg.stage4.lr)
        assert group_of[id(p)]["lr_scale"] == cfg.spoken_qa.mctp_lr_scale == 10.0


@pytest.mark.parametrize("replay", [(0.3, 0.4, 0.4, 0.2), (0.5, 0.2, 0.7, 0.1), (0.0, 0.4, 0.4, 0.2)])
def test_stage4_items_follow_the_replay_share_and_its_own_mix(replay):
    share, w_asr, w_tts, w_text = replay
    cfg = get_config("tiny", [f"spoken_qa.replay_share={share}", f"spoken_qa.replay_asr={w_asr}",
                              f"spoken_qa.replay_tts={w_tts}", f"spoken_qa.replay_text={w_text}"])
    sizes = {"sqa": 300, "asr": 500, "tts": 200, "text": 100}  # any sizes: the shares decide
    made = {kind: [f"{kind}{i}" for i in range(n)] for kind, n in sizes.items()}
    alignment = SimpleNamespace(samples={k: made[k] for k in ("asr", "tts", "text")}, val_samples=[])
    data = SFTData(cfg, SimpleNamespace(train=made["sqa"]), alignment)
    kinds = [kind for kind, _ in data.order]
    expected = {"sqa": 1 - share, "asr": share * w_asr, "tts": share * w_tts, "text": share * w_text}
    for kind, want in expected.items():
        assert kinds.count(kind) / len(kinds) == pytest.approx(want, abs=0.002), kind
    assert all(data.samples[kind][i].startswith(kind) for kind, i in data.order)


@pytest.mark.parametrize("grad_to_llm", [True, False])
def test_mctp_loss_reaches_the_llm_layers_only_when_asked(grad_to_llm):
    cfg = get_config("tiny")
    llm, mctp = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size)), MCTP(cfg.llm, 2)
    batch = pack([spoken_answer_sample(user_audio([1, 2, 3]), "ana lives in rome", list(range(30)),
                                       (1, 10, 4, 10))], 128)
    _, hidden = llm(batch.tokens, doc_ids=batch.doc_ids)
    losses = mctp_losses(llm, mctp, batch.tokens, batch.labels, batch.doc_ids, hidden=hidden,
                         detach=not grad_to_llm)
    torch.stack(losses).mean().backward()
    layer_grads = [p.grad for p in llm.layers.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in layer_grads) == grad_to_llm
    assert llm.lm_head.weight.grad is not None  # the shared head learns from the modules either way
    out = sft_losses(llm, mctp, batch, grad_to_llm)
    assert torch.allclose(out["loss"], out["llm_ce"] + out["mctp_ce"])


def test_stage_all_resumes_where_it_stopped(tiny_full_run):
    run, common, calls = tiny_full_run
    assert calls["first_return"] == 1  # --stop-after 3 stopped stage 0
    assert "resumed stage0 from" in calls["second_output"] and "at step 3/" in calls["second_output"]
    stamps = {}
    for stage in range(5):
        path = run / "run" / f"stage{stage}" / "checkpoint.pt"
        assert load_checkpoint(str(path))["finished"]
        stamps[stage] = os.path.getmtime(path)
    assert train.main(["--stage", "all", *common]) == 0  # everything finished: nothing to do
    assert {s: os.path.getmtime(run / "run" / f"stage{s}" / "checkpoint.pt") for s in range(5)} == stamps


def test_stage_all_says_how_long_each_stage_will_take(tiny_full_run):
    """After its first steps a stage says its rate and time left, and names the stages still to
    come (tiny has no reference times, so they are not projected: train/eta.py)."""
    output = tiny_full_run[2]["second_output"]
    assert re.search(r"stage 0: [0-9.]+ steps/s on this machine: about [0-9]+ s for the [0-9]+ steps "
                     r"left; stages 1-4 after it: not projected", output), output[-2000:]


def test_stage_all_says_it_skips_finished_stages(tiny_full_run, capsys):
    _, common, _ = tiny_full_run
    assert train.main(["--stage", "all", *common]) == 0
    assert capsys.readouterr().out.count("already finished") == 5


def test_stage4_trains_everything_and_reports(tiny_full_run):
    run, _, _ = tiny_full_run
    stage3 = load_checkpoint(str(run / "run" / "stage3" / "checkpoint.pt"))["model"]
    stage4 = load_checkpoint(str(run / "run" / "stage4" / "checkpoint.pt"))["model"]
    assert set(stage3) == set(stage4)  # llm.* and mctp.*, as in stage 3
    for prefix in ("llm.layers.0.", "llm.embed_tokens", "mctp.mods.0.", "mctp.mods.9."):
        assert any(not torch.equal(stage3[k], stage4[k]) for k in stage4 if k.startswith(prefix)), prefix
    metrics = json.loads((run / "run" / "stage4" / "metrics.json").read_text())
    for facts in ("seen", "text_only"):
        assert {"s2t", "s2s", "n"} <= set(metrics["spoken_qa"][facts])
    assert metrics["spoken_qa"]["text_only"]["n"] == 8  # 2 text-only people x 4 facts, tiny world
    assert 0 <= metrics["spoken_qa"]["seen"]["s2s_ceiling"] <= 1  # the judge on the recorded answers
    assert "s2s_ceiling" not in metrics["spoken_qa"]["text_only"]  # never spoken: nothing recorded
    cfg = get_config("tiny")
    cfg.run_dir = str(run / "run")
    llm, mctp = load_speech_lm(cfg, 4)
    assert len(mctp) == cfg.mctp.n_modules


def test_spoken_qa_splits(tiny_full_run):
    run, _, _ = tiny_full_run
    cfg = get_config("tiny")
    cfg.cache_dir = str(run / "cache")
    corpus = load_spoken_qa_corpus(cfg)
    world = make_world(cfg)
    heard = {(corpus.texts[u], int(corpus.speakers[u])) for u in corpus.indices("question")}
    for u in corpus.indices("test_seen"):  # the question was trained, never in this voice
        assert any(q == corpus.texts[u] for q, _ in heard)
        assert (corpus.texts[u], int(corpus.speakers[u])) not in heard
    text_only = set(world.text_only_people)
    trained = [corpus.texts[u] for u in corpus.indices("question") + corpus.indices("answer")]
    assert not any(set(t.split()) & text_only for t in trained)  # never heard in training
    tests = [corpus.texts[u] for u in corpus.indices("test_text")]
    assert len(tests) == 4 * len(text_only) and all(set(t.split()) & text_only for t in tests)
    codes = [[1, 2, 3]] * len(corpus)
    data = SpokenQAData(cfg, corpus, codes)
    n_spoken = sum(qa.spoken for qa in world.qa)
    assert len(data.train) == n_spoken * cfg.spoken_qa.train_voices + n_spoken  # + the written questions
    assert all(not q.spoken_fact for q in data.test_text) and all(q.spoken_fact for q in data.test_seen)


def test_tiny_model_learns_to_answer_aloud_in_vanilla_and_boost(tiny_cfg, tmp_path, capsys):
    """Stage 4's loss, groups and scoring end to end: overfit two spoken questions, then answer
    them by voice prompt in Vanilla (the LLM writes all) and Boost (the modules write the audio)."""
    from vita_mini.audio.codec import AudioCodec
    from vita_mini.audio.judge import JudgeASR
    from vita_mini.config import TrainConfig
    from vita_mini.eval.tasks import spoken_answer
    from vita_mini.infer.engine import Engine

    cfg = tiny_cfg
    torch.manual_seed(0)
    llm, mctp = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size)), MCTP(cfg.llm, cfg.mctp.n_modules)
    qa = [([1, 2, 3, 4], "ana lives in rome", list(range(5, 25))), ([9, 8, 7, 6], "bob has a cat", list(range(30, 50)))]
    batch = pack([spoken_answer_sample(user_audio(q), a, c, cfg.alignment_data.ratio) for q, a, c in qa], 128)
    task = Stage4Task(cfg, SimpleNamespace(order=[0]), llm, mctp)
    optimizer = make_optimizer(task, TrainConfig(lr=1e-3, weight_decay=0.0))
    for _ in range(200):
        loss = sft_losses(llm, mctp, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    codec, judge = AudioCodec(cfg.codec, cfg.audio).eval(), JudgeASR(cfg.judge, cfg.audio).eval()
    engine = Engine(llm, mctp)
    for question, answer, codes in qa:
        for mode in ("vanilla", "boost"):
            spoken = spoken_answer(engine, codec, judge, user_audio(question), 0, mode)
            assert spoken.text == answer and answer_is_right(answer.split()[-1], spoken.text), mode
            assert spoken.first_audio is not None  # it wrote audio chunks too
    # generate.py's streaming path: text printed, audio decoded and written chunk by chunk
    import generate
    from vita_mini.audio.wav import read_wav
    from vita_mini.infer.sampling import Sampling
    out = tmp_path / "answer.wav"
    prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, user_audio(qa[0][0]))
    generate.stream_answer(engine, prompt, (1, 10, 4, 10), Sampling(), codec, 0, str(out))
    printed = capsys.readouterr().out
    assert "text: ana lives in rome\n" in printed and "tokens/s" in printed and f"wrote {out}" in printed
    samples, rate = read_wav(out)
    assert rate == 16000 and samples.shape[1] == len(qa[0][2]) * codec.samples_per_token

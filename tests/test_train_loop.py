import math
import os
import shutil

import pytest
import torch

from vita_mini.config import TrainConfig
from vita_mini.data.corpus import load_corpus
from vita_mini.errors import VitaError
from vita_mini.checkpoint import load_checkpoint
from vita_mini.runs import load_audio_models, pick_device
from vita_mini.train.loop import BatchSampler, lr_at, train
from vita_mini.train.run_stage import run_stage
from vita_mini.train.stage0 import Stage0Task


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_share=0.1, min_lr_share=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_batch_sampler_covers_every_item_each_epoch_and_restores():
    sampler = BatchSampler(10, 4, seed=1)
    first_epoch = sampler.next() + sampler.next() + sampler.next()[:2]
    assert sorted(first_epoch) == list(range(10))
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(5)]
    again = BatchSampler(10, 4, seed=1)
    again.load_state_dict(state)
    assert [again.next() for _ in range(5)] == expected


def test_length_buckets_cover_every_item_and_batch_similar_lengths():
    lengths = [int(x) for x in torch.randint(50, 500, (200,), generator=torch.Generator().manual_seed(0))]
    plain, bucketed = BatchSampler(200, 8, seed=3), BatchSampler(200, 8, seed=3, lengths=lengths, pool_batches=5)

    def padding(sampler):  # share of a padded batch that is padding, over one epoch
        batches = [sampler.next() for _ in range(25)]
        assert sorted(i for b in batches for i in b) == list(range(200))  # each item once
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for b in batches) / sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padding(bucketed) < padding(plain) / 3
    state = bucketed.state_dict()
    expected = [bucketed.next() for _ in range(30)]  # across the next epoch boundary
    again = BatchSampler(200, 8, seed=3, lengths=lengths, pool_batches=5)
    again.load_state_dict(state)
    assert [again.next() for _ in range(30)] == expected
    with pytest.raises(ValueError, match="3 values for 200 items"):
        BatchSampler(200, 8, seed=3, lengths=[1, 2, 3])


def test_length_buckets_keep_batches_whole_with_a_partial_last_batch():
    lengths = list(range(30))  # 30 items, batches of 4: 7 full batches and one of 2 per epoch
    sampler = BatchSampler(30, 4, seed=0, lengths=lengths, pool_batches=2)
    order = sampler._order()
    assert sorted(order) == list(range(30))
    batches = [order[k:k + 4] for k in range(0, 28, 4)] + [order[28:]]
    assert all(b == sorted(b) for b in batches)  # each a run of one pool sorted by length
    assert [len(b) for b in batches] == [4] * 7 + [2]  # the short pool's leftover, last
    assert len({tuple(b) for b in batches}) == 8


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(VitaError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(VitaError, match="not a device name"):
        pick_device("gpu-please")


def test_precision_choices():
    from vita_mini.train.loop import autocast, native_bf16

    cpu = torch.device("cpu")
    with autocast(cpu, "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu") == native_bf16(cpu)
    with pytest.raises(VitaError, match="precision='fp16': choose auto, bf16 or fp32"):
        autocast(cpu, "fp16")


def _task(cfg):
    return Stage0Task(cfg, load_corpus(cfg, log=lambda s: None))


def test_the_judge_also_learns_the_codecs_decoded_mel(tiny_cfg):
    """Stage 0's loss adds a judge CTC on the codec's reconstruction, detached from the codec."""
    batch, task = [0, 1, 2, 3], _task(tiny_cfg)
    torch.manual_seed(0)
    with_decoded = task.loss(batch, torch.device("cpu"))
    tiny_cfg.judge.decoded_weight = 0.0
    task = _task(tiny_cfg)  # a fresh one: a training forward moves the VQ codebook
    torch.manual_seed(0)
    without = task.loss(batch, torch.device("cpu"))
    assert "judge_decoded_ctc" not in without
    assert torch.allclose(with_decoded["loss"], without["loss"] + with_decoded["judge_decoded_ctc"])
    mel, frames, texts, speakers = task.batch([task.train_ids[i] for i in batch], torch.device("cpu"))
    recon = task.model.codec.training_loss(mel, frames, texts, speakers)["recon"]
    assert recon.shape == mel.shape and not recon.requires_grad  # the judge's loss cannot move the codec


def test_tiny_training_lowers_the_loss(tiny_cfg):
    tiny_cfg.stage0.steps = 30
    result = train(_task(tiny_cfg), tiny_cfg, tiny_cfg.stage0, os.path.join(tiny_cfg.run_dir, "c.pt"),
                   torch.device("cpu"), log=lambda s: None)
    losses = [h["loss"] for h in result.history]
    assert result.finished and losses[-1] < 0.8 * losses[0]


def test_resume_matches_an_uninterrupted_run(tiny_cfg, tmp_path):
    tiny_cfg.stage0 = TrainConfig(steps=12, batch_size=4, lr=3e-3, eval_every=100,
                                  checkpoint_every=4, log_every=1)
    device, quiet = torch.device("cpu"), (lambda s: None)
    full = train(_task(tiny_cfg), tiny_cfg, tiny_cfg.stage0, str(tmp_path / "full.pt"), device, log=quiet)

    path = str(tmp_path / "part.pt")
    part = train(_task(tiny_cfg), tiny_cfg, tiny_cfg.stage0, path, device, stop_after=4, log=quiet)
    assert not part.finished and load_checkpoint(path)["step"] == 4
    shutil.copy(path, tmp_path / "at_step_4.pt")
    # a Ctrl-C after 3 more steps saves where it stopped ...
    part = train(_task(tiny_cfg), tiny_cfg, tiny_cfg.stage0, path, device, resume=True, stop_after=3,
                 log=quiet)
    assert load_checkpoint(path)["step"] == 7
    # ... while a killed run falls back to its last periodic checkpoint (step 4) and loses 3 steps
    shutil.copy(tmp_path / "at_step_4.pt", path)
    resumed = train(_task(tiny_cfg), tiny_cfg, tiny_cfg.stage0, path, device, resume=True, log=quiet)
    assert resumed.finished and resumed.step == full.step == 12
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    a, b = load_checkpoint(str(tmp_path / "full.pt"))["model"], load_checkpoint(path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage0_end_to_end_writes_everything(tiny_cfg):
    metrics = run_stage(tiny_cfg, 0, torch.device("cpu"), log=lambda s: None)
    folder = os.path.join(tiny_cfg.run_dir, "stage0")
    for name in ("checkpoint.pt", "config.json", "metrics.json", "samples/0_original.wav",
                 "samples/0_resynth.wav"):
        assert os.path.exists(os.path.join(folder, name)), name
    for key in ("perplexity", "codebook_used", "mel_l1", "codec_cer", "judge_cer", "resynth_judge_cer"):
        assert key in metrics
    codec, judge = load_audio_models(tiny_cfg)
    assert codec.encode(torch.randn(3200) * 0.1).shape == (5,)
    # another config cannot load it, and says which field differs
    tiny_cfg.codec.codebook_size = 32
    with pytest.raises(VitaError, match="codec.codebook_size: 64 -> 32"):
        load_audio_models(tiny_cfg)


def test_a_field_added_after_the_checkpoint_counts_as_its_default_a_section_differs():
    from vita_mini.config import get_config
    from vita_mini.checkpoint import config_differences

    now = get_config("toy").to_dict()
    saved = get_config("toy").to_dict()
    del saved["alignment_data"]["mix_copy"]  # a checkpoint from before the field existed
    assert config_differences(saved, now, ["alignment_data"]) == []
    now["alignment_data"]["mix_copy"] = 0.2
    assert config_differences(saved, now, ["alignment_data"]) == ["alignment_data.mix_copy: 0.0 -> 0.2"]
    del saved["mctp_data"]  # a whole section added later: the checkpoint's stage worked otherwise
    assert config_differences(saved, now, ["mctp_data"]) == [
        f"mctp_data: absent (older than this section) -> {now['mctp_data']}"]


class _Regression:
    """A stand-in StageTask: least squares on fixed data, the loss a mean over the items."""

    name, config_sections = "stage9", []

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(16, 5, generator=g), torch.randn(16, generator=g)
        self.model = torch.nn.Linear(5, 1)
        self.n_train = 16

    def param_groups(self):
        return [{"params": list(self.model.parameters())}]

    def loss(self, indices, device):
        error = self.model(self.x[indices]).squeeze(-1) - self.y[indices]
        return {"loss": error.pow(2).mean(), "max_error": error.abs().max()}


def test_gradient_accumulation_matches_the_whole_batch():
    from vita_mini.train.loop import make_optimizer, micro_batches, train_step
    grads, terms = {}, {}
    for k in (1, 4):
        torch.manual_seed(0)
        task, tcfg = _Regression(), TrainConfig(steps=1, batch_size=8, grad_accum=k, grad_clip=1e9)
        out, _, _ = train_step(task, make_optimizer(task, tcfg), BatchSampler(16, 8, seed=1),
                               tcfg, 0, torch.device("cpu"))
        grads[k] = [p.grad.clone() for p in task.model.parameters()]
        terms[k] = float(out["loss"])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[1], grads[4]))
    assert terms[4] == pytest.approx(terms[1], rel=1e-5)  # equal parts: the mean of means
    assert micro_batches(list(range(6)), 3) == [[0, 1], [2, 3], [4, 5]]

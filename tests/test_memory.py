"""The peak-memory estimate printed before training (train/memory.py), checked against what a
real training step allocates on the CPU (torch.profiler's memory records)."""

import pytest
import torch

from vita_mini.config import get_config
from vita_mini.train.loop import make_optimizer, make_sampler, train_step
from vita_mini.train.memory import estimate_memory, measure_peak_cpu, saved_activation_bytes
from vita_mini.train.run_stage import build_task


@pytest.mark.parametrize("stage", [0, 1, 4])
def test_estimate_is_within_a_quarter_of_the_measured_peak(copy_tiny_run, tmp_path, stage):
    run = copy_tiny_run(tmp_path, range(stage))
    cfg = get_config("tiny", [f"cache_dir={tmp_path / 'cache'}"])
    cfg.run_dir = str(run)
    device = torch.device("cpu")
    task = build_task(cfg, stage, device, log=lambda *_: None)
    tcfg = getattr(cfg, task.name)
    optimizer, sampler = make_optimizer(task, tcfg), make_sampler(task, tcfg, cfg.seed)
    estimate = estimate_memory(task, tcfg, sampler, device)
    weights = sum(p.numel() * p.element_size() for p in task.model.parameters())
    measured = weights + measure_peak_cpu(
        lambda: train_step(task, optimizer, sampler, tcfg, 0, device))
    assert estimate.trainable_parameters == sum(p.numel() for p in task.model.parameters()
                                                if p.requires_grad)
    assert 0.75 <= estimate.peak / measured <= 1.25, (estimate.describe(), measured)


def test_counting_activations_leaves_the_model_and_the_random_state_alone(tiny_cfg):
    task = build_task(tiny_cfg, 0, torch.device("cpu"), log=lambda *_: None)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    rng = torch.get_rng_state()
    assert saved_activation_bytes(task, [0, 1, 2], torch.device("cpu"), "fp32") > 0
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in task.model.state_dict().items())

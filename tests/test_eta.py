"""The time a stage and the rest of `--stage all` will take (train/eta.py), and the step profiler
(train/step_profile.py) that finds where a step's time goes."""

import pytest
import torch

from vita_mini.config import get_config
from vita_mini.train import eta
from vita_mini.train.eta import StageClock, projected_seconds
from vita_mini.train.step_profile import CATEGORIES, category, profile_stage


class FakeClock:
    """time.perf_counter that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_time(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(eta.time, "perf_counter", clock)
    return clock


def run_steps(clock: StageClock, fake_time, seconds_per_step: float, steps: int, total: int) -> list:
    said = []
    for step in range(1, steps + 1):
        fake_time.now += seconds_per_step
        said.append(clock.tick(step, total))
    return said


def test_the_clock_says_once_how_long_the_stage_takes(fake_time):
    cfg = get_config("toy")
    clock = StageClock(cfg, 1, "fp32", measure_after=10, skip=3)
    said = run_steps(clock, fake_time, 0.5, 40, total=1800)
    messages = [m for m in said if m]
    assert len(messages) == 1 and said.index(messages[0]) == 12  # after 3 skipped + 10 timed steps
    # 0.5 s a step (the skipped steps are not timed), 1787 steps left after step 13
    assert "2.00 steps/s" in messages[0] and "about 15 min for the 1787 steps left" in messages[0]
    assert "then" not in messages[0]


def test_the_clock_projects_the_later_stages_from_the_reference(fake_time, monkeypatch):
    cfg = get_config("toy")
    reference = {0: (0.05, 60.0), 1: (0.05, 60.0), 2: (0.01, 0.0), 3: (0.1, 30.0), 4: (0.2, 60.0)}
    monkeypatch.setitem(eta.REFERENCE, "toy", {"fp32": reference})
    clock = StageClock(cfg, 1, "fp32", later=(3, 4), measure_after=10, skip=3)
    # this machine takes 1.6 s a step of 16 samples: twice the reference's 0.05 s a sample
    message = [m for m in run_steps(clock, fake_time, 1.6, 20, total=1800) if m][0]
    expected = 2 * (0.1 * cfg.stage3.batch_size * cfg.stage3.steps + 30
                    + 0.2 * cfg.stage4.batch_size * cfg.stage4.steps + 60)
    assert projected_seconds(cfg, (3, 4), "fp32", 2.0) == pytest.approx(expected)
    assert f"then stages 3-4, projected: about {expected / 60:.0f} min" in message


def test_the_clock_says_when_it_cannot_project(fake_time):
    cfg = get_config("tiny")
    clock = StageClock(cfg, 2, "fp32", later=(3,), measure_after=2, skip=1)
    message = [m for m in run_steps(clock, fake_time, 0.1, 5, total=10) if m][0]
    assert "stage 3 after it: not projected (no reference times for preset tiny)" in message


def test_every_reference_covers_every_stage():
    for preset, kinds in eta.REFERENCE.items():
        get_config(preset)  # a real preset
        for kind, table in kinds.items():
            assert kind in ("fp32", "bf16") and sorted(table) == [0, 1, 2, 3, 4], (preset, kind)
            assert all(per_sample > 0 and report >= 0 for per_sample, report in table.values())


def test_operators_fall_into_the_profile_categories():
    assert category("aten::addmm") == "matmul"
    assert category("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention"
    assert category("aten::convolution_backward") == "conv"
    assert category("aten::_ctc_loss") == "loss"
    assert category("Optimizer.step#AdamW.step") == "optimizer"
    assert category("aten::gelu") == "other"


def test_profile_of_a_stage_0_step_adds_up(tiny_cfg):
    row = profile_stage(tiny_cfg, 0, torch.device("cpu"), steps=2, warmup=1)
    assert set(CATEGORIES) <= set(row) and row["precision"] == "fp32"
    assert row["conv"] > 0 and row["data"] > 0 and row["optimizer"] > 0
    total = sum(row[label] for label in CATEGORIES)
    assert 0.3 * row["wall"] < total < 1.5 * row["wall"]  # the operators' time is most of the step

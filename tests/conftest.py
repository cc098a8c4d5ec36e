"""Shared fixtures: a tiny-preset config whose corpus cache and runs live in a temp folder."""

import pytest
import torch

from vita_mini.config import get_config


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tiny_cfg(tiny_cache, tmp_path):
    cfg = get_config("tiny")
    cfg.cache_dir = tiny_cache  # the tiny corpus is synthesized once per test session
    cfg.run_dir = str(tmp_path / "run")
    cfg.device = "cpu"
    return cfg


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_full_run(tmp_path_factory):
    """`python train.py --stage all` at the tiny preset, stopped after 3 steps of stage 0, then run
    again (it resumes stage 0 and trains stages 1 to 4, each in its own process). Shared by the
    stage-4, chat and evaluation tests. Returns (run folder, common flags, what the first call
    returned and the second printed)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = tmp_path_factory.mktemp("full")
    common = ["--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"), f"cache_dir={run / 'cache'}"]

    def train_all(*flags):
        return subprocess.run([sys.executable, os.path.join(root, "train.py"), "--stage", "all", *flags, *common],
                              capture_output=True, text=True, cwd=root)

    first = train_all("--stop-after", "3")
    second = train_all()
    assert second.returncode == 0, second.stderr[-3000:]
    return run, common, {"first_return": first.returncode, "second_output": second.stdout}


@pytest.fixture(scope="session")
def copy_tiny_run(tiny_full_run):
    """copy(folder, stages): ``folder/run`` with copies of the tiny run's finished ``stages`` and
    ``folder/cache`` with its corpus, so that a test trains only the stages it is about (the
    tiny pipeline is trained once per session, by ``tiny_full_run``). Returns ``folder/run``."""
    import shutil

    run, _, _ = tiny_full_run

    def copy(folder, stages):
        shutil.copytree(run / "cache", folder / "cache", dirs_exist_ok=True)
        for stage in stages:
            shutil.copytree(run / "run" / f"stage{stage}", folder / "run" / f"stage{stage}")
        return folder / "run"

    return copy


@pytest.fixture
def tiny_run_without_stage4(copy_tiny_run, tmp_path):
    """A copy of the tiny run's stages 0 to 3 (no stage 4): its run folder."""
    return str(copy_tiny_run(tmp_path / "upto3", range(4)))

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

"""Data parallelism (train/distributed.py): torchrun with gloo on the CPU against one process.

The reference for two processes is one process that cuts the same global batch into the same
micro-batches (grad_accum=2): both compute the mean of the same two micro-batch gradients, so
they may differ only by the order of floating-point additions (DDP's all-reduce against a
running sum)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from vita_mini.checkpoint import load_checkpoint, load_state_strict
from vita_mini.config import Config, TrainConfig, get_config
from vita_mini.errors import VitaError
from vita_mini.runs import build_model
from vita_mini.train.distributed import World, micro_batch_count, resume_micro_batches
from vita_mini.train.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tiny stage 1, short: 8 steps planned so that no evaluation or report runs in 4 + 2 steps
STAGE1 = ["stage1.steps=8", "stage1.eval_every=100", "stage1.checkpoint_every=100", "stage1.log_every=1"]
TOLERANCE = 1e-5  # largest parameter difference allowed: a few float32 roundings, after AdamW


def train_py(run, *flags, processes=1, env=None):
    """``train.py --stage 1`` at the tiny preset into ``run`` (one process, or torchrun with N)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                 "--standalone"] if processes > 1 else [sys.executable])
    command = [*launcher, os.path.join(ROOT, "train.py"), "--stage", "1", "--preset", "tiny",
               "--device", "cpu", "--run-dir", str(run), f"cache_dir={run.parent / 'cache'}",
               "num_threads=1", *STAGE1, *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, **(env or {})})


def checkpoint_of(run, stage=1):
    return load_checkpoint(str(run / f"stage{stage}" / "checkpoint.pt"))


def largest_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(copy_tiny_run, tmp_path_factory):
    """Stage 1 after 4 steps with one process (grad_accum=2) and with two (grad_accum=1); then
    both resumed for 2 more steps with one process. Returns {name: run folder}."""
    folder = tmp_path_factory.mktemp("ddp")
    one, two = copy_tiny_run(folder / "one", [0]), copy_tiny_run(folder / "two", [0])
    for run, flags, processes in ((one, ["stage1.grad_accum=2"], 1), (two, [], 2)):
        result = train_py(run, "--stop-after", "4", *flags, processes=processes)
        # stopped early, as asked: exit code 1 alone, 0 under torchrun (any other is a failure there)
        assert result.returncode == (1 if processes == 1 else 0), result.stderr[-3000:]
        shutil.copy(run / "stage1" / "checkpoint.pt", folder / f"{run.parent.name}_at_4.pt")
        result = train_py(run, "--resume", "--stop-after", "2", *flags)  # one process
        assert result.returncode == 1, result.stderr[-3000:]
    return {"folder": folder, "one": one, "two": two, "two_log": result.stdout}


def test_two_processes_match_one_with_the_same_global_batch(runs):
    one = load_checkpoint(str(runs["folder"] / "one_at_4.pt"))
    two = load_checkpoint(str(runs["folder"] / "two_at_4.pt"))
    assert one["step"] == two["step"] == 4
    assert two["world_size"] == 2 and one["micro_batches"] == two["micro_batches"] == 2
    assert one["sampler"] == two["sampler"]
    assert largest_difference(one["model"], two["model"]) < TOLERANCE
    losses = lambda c: [h["loss"] for h in c["history"]]  # noqa: E731
    assert losses(two) == pytest.approx(losses(one), rel=1e-5)  # rank 0 logs the ranks' mean


def test_a_two_process_run_resumes_with_one_process_and_continues_exactly(runs):
    one, two = checkpoint_of(runs["one"]), checkpoint_of(runs["two"])
    assert one["step"] == two["step"] == 6
    assert two["micro_batches"] == 2 and two["world_size"] == 1  # kept the checkpoint's 2
    assert "keeping its 2 micro-batches per step (1 planned)" in runs["two_log"]
    assert one["sampler"] == two["sampler"]
    assert largest_difference(one["model"], two["model"]) < TOLERANCE
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], rel=1e-5)


@pytest.mark.slow
def test_a_rank_killed_mid_run_leaves_a_checkpoint_that_loads(copy_tiny_run, tmp_path):
    """Rank 0 writes a checkpoint every step; kill it (SIGKILL, no chance to clean up) a few
    steps in, while it may be writing: the checkpoint on disk still loads, strictly."""
    run = copy_tiny_run(tmp_path / "killed", [0])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               os.path.join(ROOT, "train.py"), "--stage", "1", "--preset", "tiny", "--device", "cpu",
               "--run-dir", str(run), f"cache_dir={tmp_path / 'killed' / 'cache'}", "num_threads=1",
               "stage1.steps=100000", "stage1.checkpoint_every=1", "stage1.eval_every=100000"]
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    checkpoint = run / "stage1" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint within 2 minutes"
    time.sleep(1.0)  # a few more steps, each ending in a save
    victim = rank_process(launcher.pid, rank=0)
    os.kill(victim, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode != 0  # torchrun saw a rank die and stopped the other
    payload = checkpoint_of(run)
    assert payload["step"] >= 1 and not payload["finished"]
    load_state_strict(build_model(get_config("tiny"), 1), payload["model"], str(checkpoint))


def rank_process(launcher_pid: int, rank: int) -> int:
    """The pid of the worker with RANK=``rank`` among the launcher's children (Linux /proc)."""
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if parent == launcher_pid and f"RANK={rank}".encode() in environ:
            return pid
    raise AssertionError(f"no worker with RANK={rank} under pid {launcher_pid}")


def test_micro_batches_are_shared_by_the_processes_or_one_line_says_why():
    two = World(0, 2)
    assert micro_batch_count(8, 1, World(), "stage1") == 1
    assert micro_batch_count(8, 1, two, "stage1") == 2  # each rank one micro-batch of 4
    assert micro_batch_count(8, 4, two, "stage1") == 4  # each rank two of 2
    assert micro_batch_count(12, 3, two, "stage1") == 4  # 3 rounded up to a multiple of 2
    with pytest.raises(VitaError, match=r"stage1.batch_size=6 cannot be shared by 4 processes"):
        micro_batch_count(6, 1, World(0, 4), "stage1")
    with pytest.raises(VitaError, match=r"cannot cut stage1.batch_size=10"):
        micro_batch_count(10, 3, two, "stage1")
    assert resume_micro_batches(2, 1, World(), "stage1", "c.pt") == 2  # one process takes both
    assert resume_micro_batches(4, 2, two, "stage1", "c.pt") == 4


class _Mean:
    """A stand-in StageTask: fit one number to the mean of eight (its loss a mean over items)."""

    name, config_sections, n_train = "stage9", [], 8

    def __init__(self):
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.y = torch.arange(8.0)

    def param_groups(self):
        return [{"params": list(self.model.parameters())}]

    def loss(self, indices, device):
        return {"loss": (self.model.weight[0, 0] - self.y[indices]).pow(2).mean()}

    def evaluate(self, device):
        return {}


def test_a_checkpoint_another_world_size_cannot_continue_is_one_line(tmp_path):
    cfg, tcfg = Config(), TrainConfig(steps=4, batch_size=8, eval_every=100, log_every=1)
    path = str(tmp_path / "one.pt")
    train(_Mean(), cfg, tcfg, path, torch.device("cpu"), stop_after=2, log=lambda s: None)
    assert load_checkpoint(path)["micro_batches"] == 1
    # two ranks would each need half of the one micro-batch, which changes the update: refused,
    # before any process group is needed
    with pytest.raises(VitaError, match=r"trained with 1 micro-batch\(es\) per step; 2 processes cannot share"):
        train(_Mean(), cfg, tcfg, path, torch.device("cpu"), resume=True, log=lambda s: None,
              world=World(0, 2))


@pytest.mark.parametrize("env, flags, message", [
    ({"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"}, [],
     "stage0.batch_size=8 cannot be shared by 3 processes"),
    ({}, ["--backend", "nccl"], "--backend nccl needs CUDA devices, but this run trains on cpu"),
])
def test_bad_distributed_input_is_one_line(tmp_path, monkeypatch, env, flags, message):
    """Both are refused before any process group is joined (as torchrun's environment would
    have it for rank 0); train.py prints a VitaError as one line (tests/test_cli.py)."""
    import train as train_py_module

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(VitaError, match=message) as error:
        train_py_module.main(["--stage", "1", "--preset", "tiny", "--device", "cpu",
                              "--run-dir", str(tmp_path / "run"), *flags])
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.slow
def test_stage_all_under_torchrun_trains_the_missing_stage_in_the_same_processes(copy_tiny_run, tmp_path):
    run = copy_tiny_run(tmp_path / "all", range(4))  # stages 0-3 finished: only stage 4 trains
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               os.path.join(ROOT, "train.py"), "--stage", "all", "--preset", "tiny", "--device", "cpu",
               "--run-dir", str(run), f"cache_dir={tmp_path / 'all' / 'cache'}", "num_threads=1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage4: 2 processes" in result.stdout and "stage 4 results" in result.stdout
    assert result.stdout.count("stage 4 results") == 1  # rank 0 alone reports
    assert checkpoint_of(run, 4)["world_size"] == 2
    assert os.path.exists(run / "stage4" / "metrics.json")

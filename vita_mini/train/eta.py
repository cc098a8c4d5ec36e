"""How long a stage, and what is left of ``--stage all``, will take on this machine.

After a stage's first steps the loop knows how fast it trains *here*; ``StageClock`` turns that
into the time the stage still needs. The stages after it have not started, so their time is
projected: each stage's seconds per training sample were measured once per preset on a reference
machine (``REFERENCE``), and this machine is assumed to be as much faster or slower on the stages
to come as it is on this one. The projection is rough (another preset's shapes, another CPU's
mix of strengths), so it is printed as "about" and replaced by a measurement as each stage starts.

Two reference columns, because CPUs with AMX tiles (and GPUs) train stages 1-4 in bf16 while
stage 0 stays in fp32, which changes how the stages compare (train/loop.py ``native_bf16``).
"""

from __future__ import annotations

import time

# {preset: {kind: {stage: (seconds per training *sample*, i.e. a step's time / its batch size,
#  seconds of the stage's report)}}}, measured with ``python train.py --stage all``:
#   toy fp32  2-core AMD EPYC without AMX (AVX2), alone, two threads. Stages 1-3: a fresh clone's
#             run at bb6f9c6 (attention once per packed document; stages 1-3 at toy's shapes
#             and batch sizes, fewer steps). Stages 0 and 4: seed 3's run in README (stage 0
#             without length buckets, 698.7 s for 360 steps; stage 4 with batches of 8, the
#             default, before attention ran per document, which made its step about 19% faster
#             in an A/B, chapter 1: projections of stage 4 run that much high).
#   toy bf16  2-core x86_64 CPU with AMX, stages 1-4 in bf16 (README: the 27 min 42 s run; its
#             stage 0, in fp32, from the stage's 272 s less 65 s of corpus synthesis and a
#             report taken to be 10 s). Before attention ran per document: stages 1-4 project
#             about 15-19% high.
#   quick fp32  the AMD EPYC, a fresh clone's ``--stage all --preset quick`` at 39b7a16.
REFERENCE: dict[str, dict[str, dict[int, tuple[float, float]]]] = {
    "toy": {
        "fp32": {0: (698.7 / 360 / 32, 21), 1: (1038.4 / 1600 / 16, 101), 2: (240.9 / 1600 / 4, 8),
                 3: (518.7 / 700 / 4, 87), 4: (1 / 0.56 / 8, 56)},
        "bf16": {0: (0.55 / 32, 10), 1: (484 / 1800 / 16, 33), 2: (1 / 20.5 / 4, 4),
                 3: (243 / 900 / 4, 28), 4: (441 / 800 / 8, 29)},
    },
    "quick": {
        "fp32": {0: (309.3 / 400 / 24, 17), 1: (247.3 / 800 / 16, 31), 2: (32.5 / 400 / 4, 5),
                 3: (93.7 / 240 / 4, 25), 4: (192.5 / 360 / 4, 37)},
    },
}


def format_minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def reference(cfg, kind: str) -> dict[int, tuple[float, float]] | None:
    """The reference times of ``cfg``'s preset for ``kind`` ("fp32" or "bf16"), or None."""
    return REFERENCE.get(cfg.preset, {}).get(kind)


def projected_seconds(cfg, stages, kind: str, speed: float) -> float | None:
    """Time of ``stages`` (training and report) on a machine ``speed`` times as slow as the
    reference of ``kind``; None if the preset has no reference."""
    table = reference(cfg, kind)
    if table is None:
        return None
    total = 0.0
    for stage in stages:
        tcfg = getattr(cfg, f"stage{stage}")
        per_sample, report = table[stage]
        total += speed * (per_sample * tcfg.batch_size * tcfg.steps + report)
    return total


class StageClock:
    """Times a stage's first steps, then says once how long the rest will take.

    ``later``: the stages ``--stage all`` will train after this one (none for a single stage)."""

    def __init__(self, cfg, stage: int, kind: str, later=(), measure_after: int = 20, skip: int = 3):
        self.cfg, self.stage, self.kind, self.later = cfg, stage, kind, tuple(later)
        self.measure_after, self.skip = measure_after, skip
        self.steps_seen, self.start, self.done = 0, None, False

    def tick(self, step: int, total_steps: int) -> str | None:
        """Call after every step (``step`` = steps done); a message once, after the first steps."""
        self.steps_seen += 1
        if self.done:
            return None
        if self.steps_seen == self.skip:  # the first steps warm caches and allocators up
            self.start = time.perf_counter()
            return None
        if self.start is None or self.steps_seen < self.skip + self.measure_after:
            return None
        self.done = True
        seconds_per_step = (time.perf_counter() - self.start) / (self.steps_seen - self.skip)
        left = seconds_per_step * (total_steps - step)
        message = (f"stage {self.stage}: {1 / seconds_per_step:.2f} steps/s on this machine: about "
                   f"{format_minutes(left)} for the {total_steps - step} steps left")
        return message + self.later_message(seconds_per_step, left) if self.later else message

    def later_message(self, seconds_per_step: float, left: float) -> str:
        """What the stages after this one will take, projected from this stage's speed here."""
        which = (f"stage {self.later[0]}" if len(self.later) == 1
                 else f"stages {self.later[0]}-{self.later[-1]}")
        table = reference(self.cfg, self.kind)
        if table is None:
            return f"; {which} after it: not projected (no reference times for preset {self.cfg.preset})"
        speed = seconds_per_step / (table[self.stage][0] * getattr(self.cfg, f"stage{self.stage}").batch_size)
        after = projected_seconds(self.cfg, self.later, self.kind, speed)
        return (f"; then {which}, projected: about "
                f"{format_minutes(after)} (all of it: about {format_minutes(left + after)})")

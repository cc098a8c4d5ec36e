"""Figures for people who would rather look than read (the optional matplotlib extra).

    loss_curves.png     training loss per stage, from the ``history`` every checkpoint keeps
    mctp_accuracy.png   teacher-forced accuracy of the LLM and of each MCTP module (audio, text)
    speed.png           tokens/s and time to the first audio chunk per inference mode

``python -m vita_mini.eval --figures DIR`` draws them from the evaluation suite's results.
matplotlib is imported only here, and only when asked for: ``pip install -e ".[figures]"``.
"""

from __future__ import annotations

import os

from vita_mini.checkpoint import atomic_write_bytes, load_checkpoint
from vita_mini.config import Config
from vita_mini.errors import VitaError
from vita_mini.runs import STAGES, checkpoint_path, stage_name


def pyplot():
    """matplotlib.pyplot on a file-only backend, or one line saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise VitaError('figures need matplotlib: pip install -e ".[figures]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str) -> str:
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def loss_histories(cfg: Config) -> dict[str, list[dict]]:
    """{"stage0": [{"step": ..., "loss": ...}, ...], ...} of every stage this run has a checkpoint of."""
    out = {}
    for stage in STAGES:
        path = checkpoint_path(cfg, stage)
        if os.path.exists(path):
            out[stage_name(stage)] = load_checkpoint(path).get("history", [])
    return out


def make_figures(cfg: Config, results: dict, folder: str) -> list[str]:
    """Draw the three figures into ``folder``; their paths."""
    plt = pyplot()
    paths = []

    histories = {s: h for s, h in loss_histories(cfg).items() if h}
    if histories:
        fig, axes = plt.subplots(1, len(histories), figsize=(3.2 * len(histories), 3), squeeze=False)
        for ax, (stage, history) in zip(axes[0], histories.items()):
            ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="loss")
            for part in ("llm_ce", "mctp_ce"):  # stage 4's two terms
                if part in history[0]:
                    ax.plot([r["step"] for r in history], [r[part] for r in history], label=part)
            ax.set(title=stage, xlabel="step")
            if len(ax.lines) > 1:
                ax.legend()
        axes[0][0].set_ylabel("training loss")
        paths.append(save(fig, os.path.join(folder, "loss_curves.png")))
        plt.close(fig)

    table = results.get("mctp_accuracy") or []
    if table:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        x = range(len(table))
        ax.plot(x, [r["audio_acc"] * 100 for r in table], "o-", label="audio targets")
        ax.plot(x, [r["text_acc"] * 100 for r in table], "s-", label="text targets")
        ax.set_xticks(list(x), [f"{r['name']}\nx(p+{r['offset']})" for r in table], fontsize=7)
        ax.set(ylabel="top-1 accuracy (%)", ylim=(0, 100),
               title="teacher-forced accuracy: the LLM and each MCTP module")
        ax.legend()
        paths.append(save(fig, os.path.join(folder, "mctp_accuracy.png")))
        plt.close(fig)

    speed = results.get("speed") or {}
    if speed:
        modes = list(speed)
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
        left.bar(modes, [speed[m]["tokens_per_s"] for m in modes])
        left.set(title="tokens per second", ylabel="tokens/s")
        right.bar(modes, [speed[m]["first_audio_ms"] or 0 for m in modes])
        right.set(title="time to the first audio chunk", ylabel="ms")
        paths.append(save(fig, os.path.join(folder, "speed.png")))
        plt.close(fig)
    return paths

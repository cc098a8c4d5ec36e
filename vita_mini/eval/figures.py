"""Figures for people who would rather look than read (the optional matplotlib extra).

Each ``draw_*`` function takes plain numbers and writes one PNG:

    loss_curves.png     training loss per stage, from the ``history`` every checkpoint keeps
    mctp_accuracy.png   teacher-forced accuracy of the LLM and of each MCTP module (audio, text),
                        beside the Medusa and DeepSeek-V3 figures of tutorials/paper.md section 9
    speed.png           tokens/s and time to the first audio chunk per inference mode
    waveform_mel.png    an utterance and its resynthesis through the codec: waveform and log-mel
    codebook_usage.png  how often each audio code is used, most used first
    token_map.png       an interleaved answer, token by token: text or audio, LLM or module k
    packed_mask.png     which positions attend to which in one packed training row

``python -m vita_mini.eval --figures DIR`` draws the first three from the evaluation suite's
results; ``python -m vita_mini.eval.gallery`` draws all of them from a trained run.
matplotlib is imported only here (and by the commands that draw), and only when asked for:
``pip install -e ".[figures]"``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

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


def save(fig, path: str, dpi: int = 120) -> str:
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    return path


def save_and_close(fig, path: str, dpi: int = 120) -> str:
    save(fig, path, dpi)
    pyplot().close(fig)
    return path


def loss_histories(cfg: Config) -> dict[str, list[dict]]:
    """{"stage0": [{"step": ..., "loss": ...}, ...], ...} of every stage this run has a checkpoint of."""
    out = {}
    for stage in STAGES:
        path = checkpoint_path(cfg, stage)
        if os.path.exists(path):
            out[stage_name(stage)] = load_checkpoint(path).get("history", [])
    return out


# Reference points of tutorials/paper.md section 9 (other papers' numbers, text LLMs): Medusa's
# heads, top-1 accuracy by offset (7B model), and DeepSeek-V3's multi-token prediction, whose
# 2nd token is accepted 85-90% of the time. Offset d: the token d positions after the input.
MEDUSA_TOP1 = {2: 0.56, 3: 0.32, 4: 0.20, 5: 0.15, 6: 0.12}
DEEPSEEK_V3_SECOND_TOKEN = (2, 0.85, 0.90)


def draw_loss_curves(histories: dict[str, list[dict]], path: str) -> str:
    """One panel per stage: the training loss (and stage 4's two terms) against the step."""
    plt = pyplot()
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
    return save_and_close(fig, path)


def draw_mctp_accuracy(table: list[dict], path: str, data: str = "") -> str:
    """Top-1 accuracy by offset of the LLM and of each module (eval/mctp_accuracy.py rows, on the
    samples ``data`` names), with Medusa's heads and DeepSeek-V3's second token as grey
    reference points."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    offsets = [r["offset"] for r in table]
    ax.plot(offsets, [r["audio_acc"] * 100 for r in table], "o-", label="vita-mini, audio targets")
    ax.plot(offsets, [r["text_acc"] * 100 for r in table], "s-", label="vita-mini, text targets")
    ax.plot(list(MEDUSA_TOP1), [100 * a for a in MEDUSA_TOP1.values()], "x--", color="grey",
            label="Medusa heads, text (7B; paper.md §9)")
    d, low, high = DEEPSEEK_V3_SECOND_TOKEN
    ax.errorbar([d], [100 * (low + high) / 2], yerr=[[100 * (high - low) / 2]], fmt="D", color="dimgrey",
                capsize=3, label="DeepSeek-V3 MTP, 2nd token accepted (paper.md §9)")
    ax.set_xticks(offsets, [f"{r['name']}\n+{r['offset']}" for r in table], fontsize=7)
    ax.set(ylabel="top-1 accuracy (%)", ylim=(0, 100), xlabel="predictor and the offset of the token it predicts",
           title="teacher-forced accuracy: the LLM and each MCTP module" + (f"\n{data}" if data else ""))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_and_close(fig, path)


def draw_speed(speed: dict[str, dict], path: str, machine: str = "") -> str:
    """Two bar charts: tokens/s and time to the first audio chunk, per mode."""
    plt = pyplot()
    modes = list(speed)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    left.bar(modes, [speed[m]["tokens_per_s"] for m in modes])
    left.set(title="tokens per second", ylabel="tokens/s")
    right.bar(modes, [speed[m]["first_audio_ms"] or 0 for m in modes])
    right.set(title="time to the first audio chunk", ylabel="ms")
    if machine:
        fig.suptitle(machine, fontsize=8)
    return save_and_close(fig, path)


def draw_waveform_mel(clips: list[tuple[str, torch.Tensor, torch.Tensor]], path: str,
                      sample_rate: int = 16000) -> str:
    """One column per clip (title, waveform [N], log-mel [n_mels, F]): waveform above, log-mel below."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(clips), figsize=(4.6 * len(clips), 4.4), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.4]})
    low = min(float(mel.min()) for _, _, mel in clips)
    high = max(float(mel.max()) for _, _, mel in clips)
    for column, (title, wav, mel) in enumerate(clips):
        top, bottom = axes[0][column], axes[1][column]
        # the waveform as its envelope: the lowest and highest sample of every 8 ms
        hop = sample_rate // 125
        frames = wav[:len(wav) // hop * hop].reshape(-1, hop)
        t = np.arange(len(frames)) * hop / sample_rate
        top.fill_between(t, frames.min(-1).values.numpy(), frames.max(-1).values.numpy(), linewidth=0)
        top.set(title=title, xlim=(0, len(wav) / sample_rate), ylim=(-1, 1))
        top.title.set_fontsize(8)
        bottom.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma",
                      extent=(0, len(wav) / sample_rate, 0, mel.shape[0]))
        bottom.set(xlabel="seconds", ylabel="mel bin" if column == 0 else None)
    axes[0][0].set_ylabel("waveform")
    return save_and_close(fig, path, dpi=90)  # a noisy spectrogram compresses poorly: keep it small


def draw_codebook_usage(counts: np.ndarray, path: str) -> str:
    """How often each of the K codes occurs, most used first (log scale), with the share of codes
    used and the perplexity (the number of equally used codes with the same entropy)."""
    plt = pyplot()
    counts = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    p = counts[counts > 0] / counts.sum()
    perplexity = float(np.exp(-(p * np.log(p)).sum()))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(np.arange(len(counts)), np.maximum(counts, 0.5), width=1.0)
    ax.set_yscale("log")
    ax.set(xlabel="code, most used first", ylabel="occurrences in the corpus",
           title=f"codebook usage: {int((counts > 0).sum())} of {len(counts)} codes used, "
                 f"perplexity {perplexity:.0f}, {int(counts.sum())} tokens")
    ax.title.set_fontsize(9)
    return save_and_close(fig, path)


def draw_token_map(answers: list[tuple[str, list[str], list[int]]], path: str, per_row: int = 40) -> str:
    """Interleaved answers, one panel each (title, token labels, writers), wrapped ``per_row``
    tokens a line: each cell is one token, coloured by who wrote it (-1: the LLM, k: module k),
    labelled as the caller says (the gallery: a text token's character, nothing for an audio
    code, [ and ] for BOA and EOA)."""
    plt = pyplot()
    from matplotlib.patches import Patch
    cmap = plt.get_cmap("viridis", 10)

    def colour(writer: int):
        return "#d62728" if writer < 0 else cmap(writer % 10)

    rows = [-(-len(labels) // per_row) for _, labels, _ in answers]
    fig, axes = plt.subplots(len(answers), 1, figsize=(per_row * 0.22, sum(rows) * 0.32 + 1.0 * len(answers)),
                             squeeze=False, gridspec_kw={"height_ratios": rows})
    for ax, (title, labels, writers), n_rows in zip(axes[:, 0], answers, rows):
        for i, (label, writer) in enumerate(zip(labels, writers)):
            x, y = i % per_row, -(i // per_row)
            ax.add_patch(plt.Rectangle((x, y), 0.94, 0.9, color=colour(writer)))
            if label:
                ax.text(x + 0.47, y + 0.42, label, ha="center", va="center", fontsize=7,
                        color="white" if writer < 5 else "black", family="monospace")
        ax.set(xlim=(0, per_row), ylim=(-n_rows + 1, 1), title=title)
        ax.title.set_fontsize(8)
        ax.axis("off")
    handles = [Patch(color=colour(-1), label="the LLM")]
    handles += [Patch(color=colour(k), label=f"module {k}") for k in range(10)]
    fig.legend(handles=handles, loc="lower center", ncol=11, fontsize=6, frameon=False,
               title="who wrote each token (text shows its character, audio codes are blank, [ ] begin and end audio, * ends the answer)",
               title_fontsize=7)
    return save_and_close(fig, path)


def draw_packed_mask(doc_ids: torch.Tensor, kinds: list[str], names: list[str], path: str) -> str:
    """The attention of one packed row: position i may attend to j when both lie in the same
    sample and j <= i (doc_ids [L]; ``kinds`` per position: text, audio, special, pad; ``names``
    per sample). Each sample's triangle has its own colour; the strip above shows what each
    position holds."""
    plt = pyplot()
    doc = doc_ids.long()
    length = len(doc)
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
    image = torch.where(allowed, doc[:, None].float(), torch.tensor(float("nan")))
    image[doc == len(names)] = float("nan")  # padding: a document of its own, left blank
    fig, (strip, ax) = plt.subplots(2, 1, figsize=(5.6, 6.4), gridspec_kw={"height_ratios": [1, 12]},
                                    sharex=True)
    kind_codes = {"text": 0, "audio": 1, "special": 2, "pad": 3}
    strip.imshow(np.array([[kind_codes[k] for k in kinds]]), aspect="auto", cmap="Set2", vmin=0, vmax=7,
                 extent=(0, length, 0, 1), interpolation="nearest")
    strip.set_yticks([])
    strip.set_title("what each position holds: " + ", ".join(f"{k} ({c})" for k, c in
                    zip(kind_codes, ("green", "orange", "blue", "pink"))), fontsize=7)
    ax.imshow(image.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest", extent=(0, length, length, 0),
              aspect="auto")
    starts = [int((doc == d).nonzero()[0]) for d in range(len(names))]
    for start, name, d in zip(starts, names, range(len(names))):
        end = int((doc == d).nonzero()[-1])
        ax.text(start + 1, end - 2, name, fontsize=7, va="bottom")
    ax.set(xlabel="key position j (attended to)", ylabel="query position i",
           title=f"one packed row of {length} positions, {len(names)} samples: each position attends to the\n"
                 "positions before it in its own sample (coloured), never to another sample's")
    ax.title.set_fontsize(8)
    return save_and_close(fig, path)


def make_figures(cfg: Config, results: dict, folder: str) -> list[str]:
    """The evaluation suite's three figures in ``folder`` (those it has numbers for); their paths."""
    paths = []
    histories = {s: h for s, h in loss_histories(cfg).items() if h}
    if histories:
        paths.append(draw_loss_curves(histories, os.path.join(folder, "loss_curves.png")))
    if results.get("mctp_accuracy"):
        paths.append(draw_mctp_accuracy(results["mctp_accuracy"], os.path.join(folder, "mctp_accuracy.png")))
    if results.get("speed"):
        paths.append(draw_speed(results["speed"], os.path.join(folder, "speed.png")))
    return paths

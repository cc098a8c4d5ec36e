"""Edit-distance metrics: character and word error rates.

The paper scores ASR with WER/CER and scores generated speech by transcribing it with Whisper
and computing WER against the input text (tutorials/paper.md §7). We do the same with our judge ASR.
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    """Total edits / total reference length over a corpus (not a mean of per-item rates)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    total = sum(len(r) for r in refs)
    return edits / max(total, 1)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate over a corpus."""
    return error_rate(list(refs), list(hyps))


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over a corpus (words split on white space)."""
    return error_rate([r.split() for r in refs], [h.split() for h in hyps])

"""Characters as CTC labels, shared by the codec's CTC head and the judge ASR.

Label 0 is the CTC blank; labels 1..27 are the toy alphabet " abcdefghijklmnopqrstuvwxyz".
"""

from __future__ import annotations

import torch

from vita_mini.vocab import CHARSET

BLANK = 0
N_LABELS = len(CHARSET) + 1
_INDEX = {ch: i + 1 for i, ch in enumerate(CHARSET)}


def text_to_labels(text: str) -> torch.Tensor:
    """'abc' -> LongTensor([2, 3, 4]); characters outside the alphabet are dropped."""
    return torch.tensor([_INDEX[ch] for ch in text if ch in _INDEX], dtype=torch.long)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best path: argmax per frame, merge repeats, drop blanks. logits [B, T, N_LABELS]."""
    best = logits.argmax(-1).cpu()  # [B, T]
    texts = []
    for row, n in zip(best.tolist(), lengths.tolist()):
        out, prev = [], BLANK
        for label in row[:n]:
            if label != prev and label != BLANK:
                out.append(CHARSET[label - 1])
            prev = label
        texts.append("".join(out))
    return texts


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Mean CTC loss per target character. logits [B, T, N_LABELS] (any dtype; computed in fp32)."""
    labels = [text_to_labels(t) for t in texts]
    targets = torch.cat(labels).to(logits.device)
    target_lengths = torch.tensor([len(x) for x in labels], device=logits.device)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, N_LABELS]
    return torch.nn.functional.ctc_loss(log_probs, targets, lengths.to(logits.device),
                                        target_lengths, blank=BLANK, zero_infinity=True)

"""Characters as CTC labels, shared by the codec's CTC head and the judge ASR.

Label 0 is the CTC blank; labels 1..len(alphabet) are the alphabet's characters in order. The
toy world's alphabet is " abcdefghijklmnopqrstuvwxyz" (vocab.CHARSET, 28 labels); a real corpus
brings its own (``corpus.alphabet``: English adds the apostrophe, another language its letters),
and its transcripts are first mapped onto it (data/transcripts.py).
"""

from __future__ import annotations

import torch

from vita_mini.vocab import CHARSET

BLANK = 0
N_LABELS = len(CHARSET) + 1  # the toy alphabet's


def n_labels(alphabet: str = CHARSET) -> int:
    """Output size of a CTC head that spells ``alphabet``: its characters and the blank."""
    return len(alphabet) + 1


def text_to_labels(text: str, alphabet: str = CHARSET) -> torch.Tensor:
    """'abc' -> LongTensor([2, 3, 4]) (toy alphabet); characters outside the alphabet are dropped."""
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    return torch.tensor([index[ch] for ch in text if ch in index], dtype=torch.long)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: str = CHARSET) -> list[str]:
    """Best path: argmax per frame, merge repeats, drop blanks. logits [B, T, n_labels]."""
    best = logits.argmax(-1).cpu()  # [B, T]
    texts = []
    for row, n in zip(best.tolist(), lengths.tolist()):
        out, prev = [], BLANK
        for label in row[:n]:
            if label != prev and label != BLANK:
                out.append(alphabet[label - 1])
            prev = label
        texts.append("".join(out))
    return texts


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, texts: list[str],
             alphabet: str = CHARSET) -> torch.Tensor:
    """Mean CTC loss per target character. logits [B, T, n_labels] (any dtype; computed in fp32)."""
    labels = [text_to_labels(t, alphabet) for t in texts]
    targets = torch.cat(labels).to(logits.device)
    target_lengths = torch.tensor([len(x) for x in labels], device=logits.device)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, n_labels]
    return torch.nn.functional.ctc_loss(log_probs, targets, lengths.to(logits.device),
                                        target_lengths, blank=BLANK, zero_infinity=True)

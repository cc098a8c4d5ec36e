"""Teacher-forced top-1 accuracy of the LLM and of every MCTP module (tutorials/paper.md §3).

Counted from the LLM state a prediction starts from (position p), the LLM predicts x(p+1) and
module k predicts x(p+k+2). Accuracy is reported apart on audio-code targets and on text targets
(everything else: bytes, markers, the end token), since the modules write mostly audio.
"""

from __future__ import annotations

import torch

from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP, doc_positions, module_labels
from vita_mini.model.teacher_forced import mctp_logits
from vita_mini.vocab import AUDIO_OFFSET


@torch.no_grad()
def module_accuracy(llm: LLM, mctp: MCTP, batch) -> list[dict]:
    """One row per predictor ({"name", "offset", "audio_acc", "text_acc"}), the LLM first, on the
    packed rows ``batch`` (data/samples.py ``Batch``)."""
    tokens, labels, doc_ids = batch.tokens, batch.labels, batch.doc_ids
    positions = doc_positions(tokens, doc_ids)
    llm_logits, hidden = llm(tokens, doc_ids=doc_ids)  # [B, T, V], [B, T, C]
    rows = [("llm", 1, llm_logits, labels)]
    rows += [(f"module {k}", k + 2, logits, module_labels(labels, positions, k))
             for k, logits in enumerate(mctp_logits(llm, mctp, tokens, doc_ids, hidden))]
    table = []
    for name, offset, logits, target in rows:
        right = logits.argmax(-1) == target
        audio = target >= AUDIO_OFFSET  # audio codes are the highest ids (vocab.py)
        text = (target >= 0) & ~audio
        table.append({"name": name, "offset": offset,
                      "audio_acc": right[audio].float().mean().item(),
                      "text_acc": right[text].float().mean().item()})
    return table


def format_accuracy(table: list[dict]) -> str:
    """``module_accuracy``'s rows as an aligned text table."""
    lines = ["  who        predicts   audio acc   text acc",
             "  ---------  ---------  ---------  ---------"]
    for row in table:
        lines.append(f"  {row['name']:<9}  x(p+{row['offset']:<2})    {row['audio_acc'] * 100:7.1f}%  "
                     f"{row['text_acc'] * 100:7.1f}%")
    return "\n".join(lines)

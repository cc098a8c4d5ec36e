"""Teacher-forced passes over packed training rows: what every stage's loss and every
teacher-forced accuracy is computed from (tutorials/paper.md §3 and §6).

    lm_loss         the LLM's next-token cross-entropy on the labelled positions
    mctp_states     every MCTP module's hidden states over the rows, from the LLM's states
    mctp_logits     ... through the shared head
    mctp_losses     each module's cross-entropy against its own targets (module k: x(p+k+2))

Rows come from data/samples.py ``pack``: tokens, next-token labels (IGNORE where no loss) and
document ids [B, T]. Shapes: B rows, T positions, C = d_model, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP, doc_positions, module_labels
from vita_mini.vocab import IGNORE


def head_cross_entropy(llm: LLM, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``llm.lm_head`` over the labelled positions of ``hidden`` [B, T, C].

    The head and the softmax run only where there is a target: in a packed row of stage-1 data
    that is about 40% of the positions (prompts carry no loss). The value equals
    ``F.cross_entropy(lm_head(hidden), labels, ignore_index=IGNORE)``."""
    keep = labels != IGNORE  # [B, T]
    return F.cross_entropy(llm.lm_head(hidden[keep]).float(), labels[keep])  # [N, V] vs [N]


def lm_loss(llm: LLM, tokens, labels, doc_ids) -> torch.Tensor:
    """The LLM's mean next-token cross-entropy over the labelled positions."""
    _, hidden = llm(tokens, doc_ids=doc_ids, return_logits=False)
    return head_cross_entropy(llm, hidden, labels)


def mctp_states(llm: LLM, mctp: MCTP, tokens, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Hidden states of every module [B, T, C] (a list). ``hidden``: the LLM's states of
    ``tokens`` if already computed, else a pass without gradient computes them; ``detach=False``
    lets the modules' gradient reach the LLM through them (stage 4 may; stages 2-3 never)."""
    if hidden is None:
        with torch.no_grad():
            _, hidden = llm(tokens, doc_ids=doc_ids, return_logits=False)
    return mctp(llm, tokens, hidden.detach() if detach else hidden, doc_ids)


def mctp_logits(llm: LLM, mctp: MCTP, tokens, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Logits of every module [B, T, V] (a list); arguments as ``mctp_states``."""
    return [llm.lm_head(h) for h in mctp_states(llm, mctp, tokens, doc_ids, hidden, detach)]


def mctp_losses(llm: LLM, mctp: MCTP, tokens, labels, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Cross-entropy of each module against its own targets (one scalar per module); the shared
    head runs only at the positions that have a target (``head_cross_entropy``)."""
    positions = doc_positions(tokens, doc_ids)
    states = mctp_states(llm, mctp, tokens, doc_ids, hidden, detach)  # n_modules x [B, T, C]
    return [head_cross_entropy(llm, h, module_labels(labels, positions, k)) for k, h in enumerate(states)]

"""CTC decoding: turn the model's per-frame scores into text.

Greedy (best-path) decoding lives here; the beam search with an n-gram LM arrives with its own issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.text import Tokenizer


@dataclass
class Hypothesis:
    """One decoded utterance.

    Attributes:
        text: the decoded text.
        tokens: label ids after CTC collapsing (no blanks, no repeats).
        frames: for each token, the output frame index where it was emitted (first frame of its run).
        score: total log-probability of the chosen path (greedy) or the search score.
    """

    text: str
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0


def ctc_collapse(path: list[int], blank_id: int) -> tuple[list[int], list[int]]:
    """Collapse a best path: merge repeats, then drop blanks.

    Returns:
        (tokens, frames): the labels and the frame at which each label's run starts.

    >>> ctc_collapse([0, 3, 3, 0, 3, 4, 4, 0], blank_id=0)
    ([3, 3, 4], [1, 4, 5])
    """
    tokens: list[int] = []
    frames: list[int] = []
    previous = blank_id
    for t, label in enumerate(path):
        if label != previous and label != blank_id:
            tokens.append(label)
            frames.append(t)
        previous = label
    return tokens, frames


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[Hypothesis]:
    """Best-path CTC decoding of a padded batch.

    Args:
        log_probs: (B, T, V) log-probabilities (or logits: the argmax is the same; the score is
            then not a log-probability).
        lengths: (B,) valid output frames per utterance.
        tokenizer: maps label ids back to text; its ``blank_id`` is the CTC blank.

    Returns:
        One ``Hypothesis`` per utterance, in batch order.
    """
    best, best_ids = log_probs.detach().float().max(dim=-1)  # (B, T), (B, T)
    hyps = []
    for b, length in enumerate(lengths.tolist()):
        path = best_ids[b, :length].tolist()
        tokens, frames = ctc_collapse(path, tokenizer.blank_id)
        score = float(best[b, :length].sum())
        hyps.append(Hypothesis(text=tokenizer.decode(tokens), tokens=tokens, frames=frames, score=score))
    return hyps

"""The CTC loss of a batch as training uses it: per utterance, with the utterances CTC cannot align
(too few output frames for the labels) and non-finite losses marked, so that one bad utterance
costs its own gradient and not the whole batch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ctc_losses(logits: torch.Tensor, out_lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor,
               blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance CTC losses and which of them to train on.

    Args:
        logits: (B, T', V) model outputs, any float dtype (the loss is computed in float32).
        out_lens: (B,) valid output frames; tokens: (B, L) labels, padded; token_lens: (B,).
        blank: the blank label's id.
    Returns:
        losses (B,) float32, 0 where unusable; usable (B,) bool: finite and alignable.
    """
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T', B, V)
    # zero_infinity=True: an impossible alignment (inf loss) gets loss 0 AND gradient 0; with
    # False, its gradient is NaN even when the loss is masked, which poisons the whole batch.
    losses = F.ctc_loss(log_probs, tokens, out_lens, token_lens, blank=blank, reduction="none",
                        zero_infinity=True)  # (B,)
    usable = torch.isfinite(losses) & ctc_feasible(tokens, token_lens, out_lens)  # (B,)
    return torch.where(usable, losses, torch.zeros_like(losses)), usable


def ctc_feasible(tokens: torch.Tensor, token_lens: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
    """Which targets CTC can align: each needs a frame per label plus a blank between repeats.

    Args:
        tokens: (B, L) labels, padded; token_lens: (B,); out_lens: (B,) output frames.
    Returns:
        (B,) bool.

    >>> ctc_feasible(torch.tensor([[1, 1, 2], [1, 2, 3]]), torch.tensor([3, 3]), torch.tensor([3, 3]))
    tensor([False,  True])
    >>> ctc_feasible(torch.zeros(2, 0, dtype=torch.int64), torch.tensor([0, 0]), torch.tensor([3, 0]))
    tensor([True, True])
    """
    L = max(1, tokens.size(1))  # a batch of empty transcripts pads its labels to (B, 0)
    valid = torch.arange(1, L, device=tokens.device)[None, :] < token_lens[:, None].to(tokens.device)  # (B, L-1)
    repeats = ((tokens[:, 1:] == tokens[:, :-1]) & valid).sum(dim=1)  # (B,)
    return out_lens.to(tokens.device) >= token_lens.to(tokens.device) + repeats

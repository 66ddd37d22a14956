from __future__ import annotations

import torch
import torch.nn.functional as F

from asr.ctc_loss import ctc_losses


def test_batched_losses_equal_single_ones_and_an_unalignable_utterance_is_zeroed():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5, requires_grad=True)  # (B, T', V)
    out_lens = torch.tensor([6, 4, 2])
    tokens = torch.tensor([[1, 2, 3], [2, 2, 0], [1, 1, 0]])  # the third needs 3 frames ("1 _ 1"), has 2
    token_lens = torch.tensor([3, 2, 2])
    losses, usable = ctc_losses(logits, out_lens, tokens, token_lens, blank=0)
    assert usable.tolist() == [True, True, False]
    for i in range(2):  # batched == one utterance at a time, on its own frames and labels
        single = F.ctc_loss(logits[i, : out_lens[i]].log_softmax(-1)[:, None], tokens[i : i + 1, : token_lens[i]],
                            out_lens[i : i + 1], token_lens[i : i + 1], blank=0, reduction="none")
        assert torch.allclose(losses[i], single[0])
    assert losses[2] == 0
    losses.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[2].abs().sum() == 0  # no gradient from it


def test_half_precision_logits_give_float32_losses():
    logits = torch.randn(2, 5, 4).to(torch.bfloat16)
    losses, usable = ctc_losses(logits, torch.tensor([5, 5]), torch.tensor([[1, 2], [3, 0]]),
                                torch.tensor([2, 1]), blank=0)
    assert losses.dtype == torch.float32 and usable.all()
    expected, _ = ctc_losses(logits.float(), torch.tensor([5, 5]), torch.tensor([[1, 2], [3, 0]]),
                             torch.tensor([2, 1]), blank=0)
    assert torch.equal(losses, expected)

"""A GRU's recurrence with its own backward pass, for training on CPU.

``nn.GRU`` on CPU is differentiated step by step: each time step's backward writes a whole
(3H, H) gradient of the recurrent weights and adds it to the running sum, so a 640-unit layer
moves about 10 MB per step and per direction only to accumulate one gradient. Here the backward
loop keeps each step's gate gradients (B, 3H) and the recurrent weight gradient is one matrix
product over all steps at the end, as cuDNN does on GPU. The arithmetic is PyTorch's GRU:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The input projections of all steps are one matrix product before the loop, differentiated by
autograd as usual. ``python tools/bench_rnn_packing.py --threads 1`` times a bidirectional stack
both ways: forward + backward 1.19-1.27x faster at 256 units (T 200-800), 1.30-1.32x at 640
(T 300-600); a training step of the ``medium`` preset, 1.22x (batch 8 x 12 s), with a lower
memory peak.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def run_rnn(rnn: nn.Module, x: Tensor) -> Tensor:
    """``rnn(x)[0]`` for a batch-first RNN from a zero state: (B, T, D) -> (B, T, H); a GRU trained
    on CPU runs :func:`gru_recurrence` (the same results; its backward takes about 0.6 of the time
    of autograd's through ``nn.GRU`` there)."""
    return gru_recurrence(rnn, x) if use_gru_recurrence(rnn, x) else rnn(x)[0]


def use_gru_recurrence(rnn: nn.Module, x: Tensor) -> bool:
    """Whether :func:`gru_recurrence` should run ``rnn`` on ``x``: a one-layer unidirectional GRU
    being trained in float32 on CPU without autocast (cuDNN's own backward is better on GPU, and
    without gradients ``nn.GRU``'s forward is as fast)."""
    return (isinstance(rnn, nn.GRU) and rnn.num_layers == 1 and not rnn.bidirectional and rnn.bias
            and torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and rnn.weight_hh_l0.requires_grad and not torch.is_autocast_enabled("cpu"))


def gru_recurrence(gru: nn.GRU, x: Tensor) -> Tensor:
    """``gru(x)[0]`` for a batch-first one-layer GRU from a zero state: (B, T, D) -> (B, T, H),
    with the same gradients (up to float rounding).

    >>> gru = nn.GRU(3, 4, batch_first=True).double()
    >>> x = torch.randn(2, 5, 3, dtype=torch.double)
    >>> bool(torch.allclose(gru_recurrence(gru, x), gru(x)[0]))
    True
    """
    batch, steps, _ = x.shape
    gi = torch.addmm(gru.bias_ih_l0, x.reshape(batch * steps, -1), gru.weight_ih_l0.t())  # (B*T, 3H)
    gi = gi.view(batch, steps, -1).transpose(0, 1).contiguous()  # (T, B, 3H)
    h0 = x.new_zeros(batch, gru.hidden_size)  # (B, H)
    return _GRURecurrence.apply(gi, h0, gru.weight_hh_l0, gru.bias_hh_l0).transpose(0, 1)  # (B, T, H)


class _GRURecurrence(torch.autograd.Function):
    """``(gi (T, B, 3H), h0 (B, H), w_hh (3H, H), b_hh (3H,)) -> out (T, B, H)``: the recurrence
    given the input projections ``gi`` of every step (gates in PyTorch's order r, z, n)."""

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        steps, batch, hidden = gi.size(0), gi.size(1), h0.size(1)
        out = gi.new_empty(steps, batch, hidden)  # (T, B, H)
        rz = gi.new_empty(steps, batch, 2 * hidden)  # (T, B, 2H) the reset and update gates
        n = gi.new_empty(steps, batch, hidden)  # (T, B, H) the candidate state
        ghn = gi.new_empty(steps, batch, hidden)  # (T, B, H) W_hn h + b_hn
        h, w_t = h0, w_hh.t()
        for t in range(steps):
            gh = torch.addmm(b_hh, h, w_t)  # (B, 3H)
            torch.sigmoid(gi[t, :, : 2 * hidden] + gh[:, : 2 * hidden], out=rz[t])
            ghn[t] = gh[:, 2 * hidden:]
            torch.tanh(torch.addcmul(gi[t, :, 2 * hidden:], rz[t, :, :hidden], ghn[t]), out=n[t])
            h = out[t] = torch.lerp(n[t], h, rz[t, :, hidden:])  # (1 - z) n + z h
        ctx.save_for_backward(h0, w_hh, out, rz, n, ghn)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h0, w_hh, out, rz, n, ghn = ctx.saved_tensors
        steps, batch, hidden = out.shape
        grad_out = grad_out.contiguous()  # (T, B, H)
        d_gi = grad_out.new_empty(steps, batch, 3 * hidden)  # (T, B, 3H) gradients of the gate inputs
        d_ghn = grad_out.new_empty(steps, batch, hidden)  # (T, B, H) of W_hn h + b_hn
        dh = torch.zeros_like(h0)  # (B, H) of the state, from the steps after
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_out[t]
            h_prev = out[t - 1] if t > 0 else h0
            r, z, n_t = rz[t, :, :hidden], rz[t, :, hidden:], n[t]
            d_n = dh * (1 - z) * (1 - n_t * n_t)  # through tanh
            d_gi[t, :, 2 * hidden:] = d_n
            d_gi[t, :, hidden: 2 * hidden] = dh * (h_prev - n_t) * z * (1 - z)  # through sigmoid
            d_gi[t, :, :hidden] = d_n * ghn[t] * r * (1 - r)
            d_ghn[t] = d_n * r
            d_gh = torch.cat([d_gi[t, :, : 2 * hidden], d_ghn[t]], dim=1)  # (B, 3H)
            dh = torch.addmm(dh * z, d_gh, w_hh)  # (B, H)
        d_gh_all = torch.cat([d_gi[:, :, : 2 * hidden], d_ghn], dim=2).view(steps * batch, 3 * hidden)  # (T*B, 3H)
        h_prev_all = torch.cat([h0[None], out[:-1]]).view(steps * batch, hidden)  # (T*B, H)
        d_w_hh = d_gh_all.t() @ h_prev_all  # (3H, H): one product over every step
        return d_gi, dh, d_w_hh, d_gh_all.sum(0)

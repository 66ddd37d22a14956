"""Deep Speech 2 acoustic model (Amodei et al. 2016) with the Deep Speech 1 baseline front-end.

Layout: front-end (2-D convolutions over (time, frequency), or DS1 frame stacking + fully connected
layers) -> 1-7 recurrent layers with sequence-wise BatchNorm -> optional lookahead (row)
convolution for forward-only models -> optional fully connected layers -> linear output layer.

Every result is independent of batch padding: padded frames are zeroed before each convolution,
BatchNorm statistics are computed over valid frames only, and the backward direction of a
bidirectional layer runs on each sequence reversed within its own length (no packed sequences,
which are several times slower on CPU; see ``tools/bench_rnn_packing.py``).

Example:
    >>> import torch
    >>> model = DeepSpeech2(load_preset("tiny"), num_features=161, vocab_size=29).eval()
    >>> logits, out_lens = model(torch.randn(2, 50, 161), torch.tensor([50, 31]))
    >>> tuple(logits.shape), out_lens.tolist()  # raw logits; apply log_softmax for CTC
    ((2, 25, 29), [25, 16])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.config import ConfigError, check_ranges, check_types, config_from_dict
from asr.config_file import load_yaml
from asr.recurrence import run_rnn

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "presets"

_RNNS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`DeepSpeech2` model.

    The defaults (two 32-channel convolutions under four bidirectional GRU layers of 256 units) are
    no preset's; the presets (``asr/presets/``, :func:`load_preset`) are the tested layouts, and a
    ``TrainConfig`` without a ``model`` takes its preset's.
    """

    frontend: Literal["conv", "fc"] = "conv"  # DS2 convolutions, or DS1 frame stacking + FC
    # --- conv front-end: one entry per layer (1-3 layers); pairs are (time, frequency) ---
    conv_channels: tuple[int, ...] = (32, 32)  # output channels per layer
    conv_kernels: tuple[tuple[int, int], ...] = ((11, 41), (11, 21))  # (frames, bins)
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (1, 2))  # time stride 2 halves frame rate
    conv_paddings: tuple[tuple[int, int], ...] | None = None  # None: (kt // 2, kf // 2), symmetric
    # --- fc front-end (DS1): context window of 2*fc_context+1 frames, then clipped-ReLU layers ---
    fc_context: int = 9  # frames of context on each side (DS1 used 5, 7 or 9)
    fc_stride: int = 1  # keep every fc_stride-th stacked frame (output rate = input rate / stride)
    fc_sizes: tuple[int, ...] = (2048, 2048, 2048)  # hidden units of each FC layer
    # --- recurrent stack ---
    rnn_type: Literal["gru", "lstm", "rnn"] = "gru"  # "rnn" is nn.RNN with tanh
    rnn_hidden: int = 256  # hidden units per direction
    rnn_layers: int = 4  # 1-7
    bidirectional: bool = True
    bidirectional_merge: Literal["sum", "concat"] = "sum"  # DS2 sums the two directions
    rnn_batch_norm: bool = True  # sequence-wise BatchNorm on each recurrent layer's input
    rnn_batch_norm_first: bool = False  # also on the first recurrent layer's input
    lookahead_context: int = 0  # tau: future frames seen by the row convolution (forward-only)
    # --- head ---
    head_sizes: tuple[int, ...] = ()  # clipped-ReLU FC layers between the RNNs and the output
    dropout: float = 0.0  # after every recurrent and hidden FC layer (training only)
    clip: float = 20.0  # clipped ReLU: min(max(x, 0), clip)

    def __post_init__(self) -> None:
        check_types(self, "model.")
        if self.frontend == "conv":
            n = len(self.conv_channels)
            if not 1 <= n <= 3:
                raise ValueError(f"conv_channels: expected 1-3 layers, got {n}")
            for name in ("conv_kernels", "conv_strides", "conv_paddings"):
                value = getattr(self, name)
                if value is not None and len(value) != n:
                    raise ValueError(f"{name}: expected {n} (time, freq) pairs, got {len(value)}")
        if not 1 <= self.rnn_layers <= 7:
            raise ValueError(f"rnn_layers: expected 1-7, got {self.rnn_layers}")
        # signs, and also NaN, infinities and sizes no machine holds (a hidden size of 10^12 failed
        # in the allocator with a traceback)
        size, reach = (1, 16384), (0, 1024)
        check_ranges(self, "model.", conv_channels=size, conv_kernels=(1, 1024), conv_strides=(1, 1024),
                     conv_paddings=reach, fc_context=reach, fc_stride=(1, 1024), fc_sizes=size, rnn_hidden=size,
                     lookahead_context=reach, head_sizes=size, dropout=(0, 1, "[)"), clip=(0, None, "(]"))
        if self.lookahead_context and self.bidirectional:
            raise ValueError("lookahead_context needs a forward-only model (bidirectional: false)")


def length_mask(lens: Tensor, max_len: int) -> Tensor:
    """Boolean (B, max_len) mask, True on the first ``lens[b]`` frames of row b."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]  # (B, T)


class MaskedBatchNorm(nn.Module):
    """BatchNorm whose training statistics cover only valid (unpadded) positions.

    Args:
        num_channels: size of the channel dimension.
        channel_dim: which dimension of the input holds the channels (1 for (B, C, T, F),
            -1 for (B, T, H)).

    ``forward(x, mask)`` takes a 0/1 ``mask`` broadcastable to ``x`` with size 1 on the channel
    dimension. Eval mode uses the running statistics, so each frame is normalized on its own.
    """

    def __init__(self, num_channels: int, channel_dim: int, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.channel_dim, self.eps, self.momentum = channel_dim, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        cdim = self.channel_dim % x.dim()
        shape = [-1 if d == cdim else 1 for d in range(x.dim())]
        if self.training:
            dims = [d for d in range(x.dim()) if d != cdim]
            w = mask.to(x.dtype)
            count = w.sum() * (x.numel() / w.numel() / x.shape[cdim])  # valid positions per channel
            mean = (x * w).sum(dims) / count  # (C,)
            var = ((x - mean.view(shape)) * w).pow(2).sum(dims) / count  # (C,) biased
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * count / (count - 1).clamp(min=1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)  # (C,)
        return (x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


class ConvFrontend(nn.Module):
    """DS2 front-end: Conv2d + masked BatchNorm2d + clipped ReLU over (time, frequency).

    ``forward(feats (B, T, F), lens (B,)) -> (x (B, T', C * F'), out_lens (B,))``.
    """

    def __init__(self, cfg: ModelConfig, num_features: int):
        super().__init__()
        paddings = cfg.conv_paddings or tuple((kt // 2, kf // 2) for kt, kf in cfg.conv_kernels)
        self.clip = cfg.clip
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        in_ch, freq = 1, num_features
        for ch, k, s, p in zip(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides, paddings):
            conv = nn.Conv2d(in_ch, ch, kernel_size=k, stride=s, padding=p, bias=False)
            self.convs.append(conv)
            self.norms.append(MaskedBatchNorm(ch, channel_dim=1))
            freq = _conv_out(freq, conv, dim=1)
            in_ch = ch
        if freq < 1:
            raise ValueError(f"conv front-end leaves no frequency bins for {num_features} features")
        self.out_dim = in_ch * freq

    def output_lengths(self, lens: Tensor) -> Tensor:
        for conv in self.convs:
            lens = _conv_out(lens, conv, dim=0)
        return lens

    def time_context(self) -> tuple[int, int, int]:
        """``(stride, left_pad, field)`` in input frames: output frame j reads input frames
        ``stride * j - left_pad`` to ``stride * j - left_pad + field - 1`` (zeros outside the input).

        >>> ConvFrontend(load_preset("ds2"), 161).time_context()
        (2, 25, 51)
        """
        stride, left_pad, field = 1, 0, 1
        for conv in self.convs:
            k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
            left_pad += p * stride
            field += d * (k - 1) * stride
            stride *= s
        return stride, left_pad, field

    def forward(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        # The convolutions run on (B, C, F, T) tensors in channels-last memory with the kernels
        # transposed to (F, T): the same arithmetic as (B, C, T, F), but oneDNN's channels-last
        # kernels are several times faster on CPU for these shapes (tools/bench_train.py).
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        for conv, norm in zip(self.convs, self.norms):
            x = x * length_mask(lens, x.size(3))[:, None, None, :].to(x.dtype)  # zero padding
            weight = conv.weight.transpose(2, 3).contiguous(memory_format=torch.channels_last)
            x = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, None,
                         conv.stride[::-1], conv.padding[::-1], conv.dilation[::-1])  # (B, C, F', T')
            lens = _conv_out(lens, conv, dim=0)
            mask = length_mask(lens, x.size(3))[:, None, None, :].to(x.dtype)  # (B, 1, 1, T')
            x = F.hardtanh(norm(x, mask), 0.0, self.clip) * mask
        return x.permute(0, 3, 1, 2).flatten(2), lens  # (B, T', C * F')


def _conv_out(size, conv: nn.Conv2d, dim: int):
    """Exact Conv2d output size along ``dim`` (0 time, 1 frequency) for int or tensor sizes."""
    k, s, p, d = conv.kernel_size[dim], conv.stride[dim], conv.padding[dim], conv.dilation[dim]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ContextFrontend(nn.Module):
    """DS1 front-end: stack +-``fc_context`` frames (zeros beyond the edges), keep every
    ``fc_stride``-th, then clipped-ReLU fully connected layers.

    ``forward(feats (B, T, F), lens (B,)) -> (x (B, T', H), out_lens (B,))``.
    """

    def __init__(self, cfg: ModelConfig, num_features: int):
        super().__init__()
        self.context, self.stride, self.clip = cfg.fc_context, cfg.fc_stride, cfg.clip
        sizes = [(2 * cfg.fc_context + 1) * num_features, *cfg.fc_sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = sizes[-1]

    def output_lengths(self, lens: Tensor) -> Tensor:
        return (lens - 1) // self.stride + 1

    def time_context(self) -> tuple[int, int, int]:
        """``(stride, left_pad, field)`` in input frames, as ``ConvFrontend.time_context``."""
        return self.stride, self.context, 2 * self.context + 1

    def forward(self, feats: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        c = self.context
        x = feats * length_mask(lens, feats.size(1))[:, :, None].to(feats.dtype)  # (B, T, F)
        x = F.pad(x, (0, 0, c, c))  # (B, T + 2c, F)
        x = x.unfold(1, 2 * c + 1, self.stride)  # (B, T', F, 2c + 1)
        x = x.transpose(2, 3).flatten(2)  # (B, T', (2c + 1) * F), frames in time order
        for layer in self.layers:
            x = self.dropout(F.hardtanh(layer(x), 0.0, self.clip))  # (B, T', H)
        return x, self.output_lengths(lens)


def reverse_padded(x: Tensor, lens: Tensor) -> Tensor:
    """Reverse each row of ``x`` (B, T, D) within its own length; padded frames stay in place.

    The permutation is its own inverse: ``reverse_padded(reverse_padded(x, l), l)`` is ``x``.
    """
    t = torch.arange(x.size(1), device=x.device)[None, :]  # (1, T)
    idx = torch.where(t < lens[:, None], lens[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, idx[:, :, None].expand(-1, -1, x.size(2)))  # (B, T, D)


class RecurrentLayer(nn.Module):
    """One DS2 recurrent layer: optional sequence-wise BatchNorm, then a forward RNN and (if
    bidirectional) a backward RNN over the per-sequence reversed input, summed or concatenated.

    The BatchNorm normalizes the layer input (the DS2 input-to-hidden path, as in
    deepspeech.pytorch) over all valid (b, t) frames. The forward RNN only looks at the past, so
    trailing padding never reaches valid frames; the reversal keeps that true backwards.

    ``forward(x (B, T, D), lens (B,)) -> (B, T, H)`` (``2H`` with ``merge="concat"``).
    """

    def __init__(self, input_size: int, hidden: int, rnn_type: str, bidirectional: bool,
                 merge: str = "sum", batch_norm: bool = True):
        super().__init__()
        rnn_cls = _RNNS[rnn_type]
        self.norm = MaskedBatchNorm(input_size, channel_dim=-1) if batch_norm else None
        self.fwd = rnn_cls(input_size, hidden, batch_first=True)
        self.bwd = rnn_cls(input_size, hidden, batch_first=True) if bidirectional else None
        self.merge = merge
        self.out_dim = 2 * hidden if bidirectional and merge == "concat" else hidden

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        if self.norm is not None:
            x = self.norm(x, length_mask(lens, x.size(1))[:, :, None])  # (B, T, D)
        out = run_rnn(self.fwd, x)  # (B, T, H)
        if self.bwd is None:
            return out
        back = run_rnn(self.bwd, reverse_padded(x, lens))  # (B, T, H), time reversed per sequence
        back = reverse_padded(back, lens)  # (B, T, H), back in time order
        return out + back if self.merge == "sum" else torch.cat([out, back], dim=2)

    def step(self, x: Tensor, state: Tensor | tuple[Tensor, Tensor] | None
             ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """The next frames of unpadded sequences through a forward-only layer in eval mode:
        ``(x (B, T, D), state) -> (out (B, T, H), state)``; ``state`` None starts a sequence.
        Consecutive calls give what ``forward`` gives on the frames joined."""
        if self.bwd is not None:
            raise ValueError("step: a bidirectional layer needs the whole sequence")
        if self.norm is not None:
            x = self.norm(x, x.new_ones(1, 1, 1))  # eval mode: running statistics, frame by frame
        return self.fwd(x, state)  # (B, T, H), the hidden state after the last frame


class Lookahead(nn.Module):
    """Row convolution (DS2 sec. 3.7): each unit sees frames t..t+tau, depthwise, then clipped
    ReLU. ``forward(x (B, T, H), lens (B,)) -> (B, T, H)``; padded frames are zeroed first."""

    def __init__(self, hidden: int, context: int, clip: float):
        super().__init__()
        self.context, self.clip = context, clip
        self.conv = nn.Conv1d(hidden, hidden, context + 1, groups=hidden, bias=False)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        x = x * length_mask(lens, x.size(1))[:, :, None].to(x.dtype)  # (B, T, H)
        return self.valid(F.pad(x, (0, 0, 0, self.context)))  # (B, T + tau, H) -> (B, T, H)

    def valid(self, x: Tensor) -> Tensor:
        """The row convolution where all tau future frames are given: (B, T, H) -> (B, T - tau, H)."""
        return F.hardtanh(self.conv(x.transpose(1, 2)), 0.0, self.clip).transpose(1, 2)


class DeepSpeech2(nn.Module):
    """Deep Speech 2 acoustic model producing CTC logits.

    Args:
        cfg: architecture (see :class:`ModelConfig` and :func:`load_preset`).
        num_features: feature bins per frame F (e.g. 161 for a 20 ms spectrogram at 16 kHz).
        vocab_size: output classes V including the CTC blank.

    Raises:
        ValueError: the front-end leaves no frequency bins for ``num_features``, or a size < 1.
    """

    def __init__(self, cfg: ModelConfig, num_features: int, vocab_size: int):
        super().__init__()
        if num_features < 1 or vocab_size < 2:
            raise ValueError(f"need num_features >= 1 and vocab_size >= 2, "
                             f"got {num_features} and {vocab_size}")
        self.cfg, self.num_features, self.vocab_size = cfg, num_features, vocab_size
        frontend_cls = ConvFrontend if cfg.frontend == "conv" else ContextFrontend
        self.frontend = frontend_cls(cfg, num_features)
        self.rnns = nn.ModuleList()
        dim = self.frontend.out_dim
        for i in range(cfg.rnn_layers):
            layer = RecurrentLayer(dim, cfg.rnn_hidden, cfg.rnn_type, cfg.bidirectional,
                                   cfg.bidirectional_merge,
                                   cfg.rnn_batch_norm and (i > 0 or cfg.rnn_batch_norm_first))
            self.rnns.append(layer)
            dim = layer.out_dim
        self.lookahead = (Lookahead(dim, cfg.lookahead_context, cfg.clip)
                          if cfg.lookahead_context else None)
        sizes = [dim, *cfg.head_sizes]
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def output_lengths(self, feat_lens: Tensor) -> Tensor:
        """Number of output frames (B,) for input lengths (B,), exactly as ``forward`` gives; 0 for
        an input too short for the front-end (``forward`` refuses it)."""
        return self.frontend.output_lengths(feat_lens.long()).clamp(min=0)

    def num_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Compute CTC logits.

        Args:
            feats: (B, T, F) features; frames at or after ``feat_lens[b]`` are ignored.
            feat_lens: (B,) int64 valid frames per utterance, 1 <= feat_lens <= T.

        Returns:
            ``(logits, out_lens)``: raw logits (B, T', V) (frames past ``out_lens[b]`` are
            meaningless) and (B,) int64 output lengths.

        Raises:
            ValueError: wrong feature shape or lengths outside [1, T].
        """
        if feats.dim() != 3 or feats.size(2) != self.num_features:
            raise ValueError(f"feats: expected (B, T, {self.num_features}), "
                             f"got {tuple(feats.shape)}")
        lens = feat_lens.to(device=feats.device, dtype=torch.long)
        if lens.shape != feats.shape[:1] or bool(((lens < 1) | (lens > feats.size(1))).any()):
            raise ValueError(f"feat_lens: expected {feats.size(0)} lengths in [1, {feats.size(1)}],"
                             f" got {feat_lens.tolist()}")
        if bool((self.output_lengths(lens) < 1).any()):  # before the convolutions, which would fail less clearly
            raise ValueError(f"feat_lens {feat_lens.tolist()}: too short for the front-end")
        x, lens = self.frontend(feats, lens)  # (B, T', D)
        for rnn in self.rnns:
            x = self.dropout(rnn(x, lens))  # (B, T', H)
        if self.lookahead is not None:
            x = self.lookahead(x, lens)  # (B, T', H)
        return self.classify(x), lens  # (B, T', V), (B,)

    def classify(self, x: Tensor) -> Tensor:
        """The layers after the recurrent stack and lookahead, frame by frame: (B, T, H) -> logits (B, T, V)."""
        for layer in self.head:
            x = self.dropout(F.hardtanh(layer(x), 0.0, self.cfg.clip))  # (B, T, H')
        return self.output(x)  # (B, T, V)


def list_presets() -> list[str]:
    """Names of the bundled model presets (``asr/presets/*.yaml``), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of the bundled preset ``name``.

    Raises:
        ConfigError: unknown name (the message lists the presets).
    """
    names = list_presets()
    if name not in names:
        raise ConfigError(f"preset: unknown model preset {name!r} (available: {', '.join(names)})", key="preset")
    return PRESET_DIR / f"{name}.yaml"


def load_preset(name: str) -> ModelConfig:
    """Load the bundled preset ``name`` (e.g. ``"small"``) as a :class:`ModelConfig`.

    Raises:
        ConfigError: unknown name (the message lists the presets), or a bad preset file.
    """
    return config_from_dict(ModelConfig, load_yaml(preset_path(name)), where=name)

"""Acoustic features: DS2 log spectrogram, log-mel filterbank and MFCC, with normalization.

``FeatureExtractor`` is a thin ``nn.Module`` over torchaudio transforms. Every constant it needs
(window, mel filters, DCT matrix, global CMVN) is a buffer, so ``.to(device)`` moves it whole.
Only the CMVN buffers are saved in ``state_dict``; the rest is rebuilt from ``FeatureConfig``.

Framing (``center=False``, no padding beyond the signal): frame ``t`` covers samples
``[t * hop, t * hop + win)`` with ``win = round(sample_rate * window_ms / 1000)`` and
``hop = round(sample_rate * hop_ms / 1000)`` (320 and 160 at 16 kHz). So::

    num_frames(S) = 1 + (S - win) // hop    for S >= win
                  = 1                       for 0 < S < win  (zero-padded to one window)
                  = 0                       for S == 0

Features per frame (periodic Hamming window of ``win`` samples, power spectrum ``|X|^2``):

- ``spectrogram``: ``log(1 + |X|^2)``, FFT size ``win`` -> ``win // 2 + 1`` bins (161 at 16 kHz).
- ``fbank``: ``log(mel + 1e-6)`` with ``n_mels`` HTK-scale triangles (0 Hz to Nyquist, no area
  normalization) over a ``next_pow2(win)``-point FFT (512 at 16 kHz; with 320 points the lowest
  of 80 filters would hold no FFT bin); the frame is still the ``win`` samples above, zero-padded.
- ``mfcc``: the first ``n_mfcc`` coefficients of the orthonormal DCT-II of the ``fbank`` vector.

Example:
    >>> import torch
    >>> fx = FeatureExtractor(FeatureConfig(kind="fbank", n_mels=40)).eval()
    >>> feats, frames = fx(torch.zeros(2, 16000), torch.tensor([16000, 8000]))
    >>> tuple(feats.shape), frames.tolist()
    ((2, 99, 40), [99, 49])
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from asr.config import check_ranges, check_types

logger = logging.getLogger(__name__)

_LOG_MEL_FLOOR = 1e-6  # added to mel energies before the log (the value torchaudio's MFCC uses)
_STD_FLOOR = 1e-5  # smallest standard deviation divided by (silence, one-frame utterances)


@dataclass(frozen=True)
class FeatureConfig:
    kind: Literal["spectrogram", "fbank", "mfcc"] = "spectrogram"  # feature type, see module doc
    sample_rate: int = 16000  # Hz, of the waveforms given to the extractor
    window_ms: float = 20.0  # analysis window length, milliseconds
    hop_ms: float = 10.0  # frame shift, milliseconds
    n_mels: int = 80  # mel filters (fbank, mfcc)
    n_mfcc: int = 13  # cepstral coefficients kept (mfcc)
    normalize: Literal["utterance", "global", "none"] = "utterance"  # mean/variance normalization
    dither: float = 0.0  # std of Gaussian noise added in training mode, in 16-bit sample units

    def __post_init__(self) -> None:
        check_types(self, "features.")  # kind and normalize among them
        # finite and bounded: window_ms=1e400 (inf) or 1e300 overflowed in win_length with a
        # traceback; an infinite dither trained a NaN model (32768: the 16-bit full scale)
        check_ranges(self, "features.", sample_rate=(1, 384_000), window_ms=(0, 1000, "(]"),
                     hop_ms=(0, 1000, "(]"), n_mels=(1, 1024), n_mfcc=(1, 1024), dither=(0, 32768))
        if self.n_mfcc > self.n_mels:  # the one bound check_ranges cannot give: between two fields
            raise ValueError(f"FeatureConfig: n_mfcc={self.n_mfcc} must be in 1..n_mels={self.n_mels}")
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"FeatureConfig: window_ms={self.window_ms}, hop_ms={self.hop_ms} at "
                             f"{self.sample_rate} Hz give win={self.win_length}, "
                             f"hop={self.hop_length} samples")

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return round(self.sample_rate * self.hop_ms / 1000)


def fft_size(win_length: int) -> int:
    """The FFT size of the mel features: the window length rounded up to a power of two.

    >>> fft_size(400), fft_size(512), fft_size(513)
    (512, 512, 1024)
    """
    return 1 << (win_length - 1).bit_length()


def num_frames(num_samples: int, cfg: FeatureConfig) -> int:
    """Exact number of frames ``FeatureExtractor`` makes from ``num_samples`` samples.

    Raises:
        ValueError: ``num_samples`` is negative.

    >>> cfg = FeatureConfig()
    >>> [num_frames(s, cfg) for s in (0, 1, 319, 320, 479, 480, 16000)]
    [0, 1, 1, 1, 1, 2, 99]
    """
    if num_samples < 0:
        raise ValueError(f"num_frames: num_samples={num_samples} is negative")
    if num_samples == 0:
        return 0
    return 1 + max(0, num_samples - cfg.win_length) // cfg.hop_length


class FeatureExtractor(nn.Module):
    """Padded waveforms -> normalized features with zeroed padding (see the module docstring).

    Args:
        cfg: the feature settings; bad values were already rejected by ``FeatureConfig``.

    ``forward(waves, wave_lens)`` takes ``waves`` (B, S) float and ``wave_lens`` (B,) int64 (samples
    beyond ``wave_lens`` are ignored, whatever they hold) and returns ``feats`` (B, T, F) float32
    with ``T = num_frames(S)`` and ``num_frames`` (B,) int64; frames past ``num_frames`` are zero.
    A frame only sees its own utterance's samples, so features do not depend on the batch.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        win, hop = cfg.win_length, cfg.hop_length
        transforms = torchaudio.transforms
        common = dict(win_length=win, hop_length=hop, window_fn=torch.hamming_window, power=2.0,
                      center=False)
        if cfg.kind == "spectrogram":
            self.n_fft = win
            self.transform: nn.Module = transforms.Spectrogram(n_fft=self.n_fft, **common)
        else:
            self.n_fft = fft_size(win)
            mel = dict(n_fft=self.n_fft, n_mels=cfg.n_mels, f_min=0.0, f_max=None, norm=None,
                       mel_scale="htk", **common)
            with warnings.catch_warnings():  # torchaudio's own warning of empty filters, less clear than ours
                warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
                if cfg.kind == "fbank":
                    self.transform = transforms.MelSpectrogram(sample_rate=cfg.sample_rate, **mel)
                else:  # log_mels=True: log(mel + 1e-6), not the batch-dependent top_db-clamped dB scale
                    self.transform = transforms.MFCC(
                        sample_rate=cfg.sample_rate, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho",
                        log_mels=True, melkwargs=mel)
            fb = next(m.fb for m in self.transform.modules() if isinstance(m, transforms.MelScale))  # (n_fft//2+1, n_mels)
            if empty := int((fb.max(dim=0).values == 0).sum()):  # a warning, not an error: such checkpoints still load
                logger.warning("features: n_mels=%d at %d Hz with a %d-point FFT (%g ms window) leaves %d mel "
                               "filters without an FFT bin, whose features are constant; use fewer mel filters "
                               "or a longer window", cfg.n_mels, cfg.sample_rate, self.n_fft, cfg.window_ms, empty)
        # Window, filters and DCT follow .to() but stay out of checkpoints (rebuilt from cfg).
        for module in self.transform.modules():
            for name in list(module._buffers):
                module.register_buffer(name, module._buffers.pop(name), persistent=False)
        self.register_buffer("cmvn_mean", torch.zeros(self.num_features))  # (F,)
        self.register_buffer("cmvn_std", torch.ones(self.num_features))  # (F,)

    @property
    def num_features(self) -> int:
        """F, the size of one feature vector."""
        if self.cfg.kind == "spectrogram":
            return self.n_fft // 2 + 1
        return self.cfg.n_mels if self.cfg.kind == "fbank" else self.cfg.n_mfcc

    def set_cmvn(self, mean: Tensor, std: Tensor) -> None:
        """Set the global CMVN statistics used by ``normalize="global"``.

        Args:
            mean, std: (F,) per-feature mean and standard deviation of un-normalized features.

        Raises:
            ValueError: wrong shape, non-finite values or a non-positive std.
        """
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        shape = (self.num_features,)
        if tuple(mean.shape) != shape or tuple(std.shape) != shape:
            raise ValueError(f"set_cmvn: expected mean and std of shape {shape}, "
                             f"got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("set_cmvn: mean and std must be finite and std positive")
        self.cmvn_mean.copy_(mean.to(self.cmvn_mean))
        self.cmvn_std.copy_(std.to(self.cmvn_std))

    def frame_counts(self, wave_lens: Tensor) -> Tensor:
        """(B,) int64 frame counts for (B,) sample counts; same rule as ``num_frames``."""
        win, hop = self.cfg.win_length, self.cfg.hop_length
        full = 1 + (wave_lens - win).clamp_min(0) // hop
        return torch.where(wave_lens > 0, full, torch.zeros_like(full)).long()

    def raw(self, waves: Tensor, wave_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Un-normalized features (dither applied in training mode), padded frames zero.

        Args:
            waves: (B, S) floating waveforms in [-1, 1].
            wave_lens: (B,) integer valid samples per row, each in 0..S.

        Returns:
            feats (B, T, F) float32 and num_frames (B,) int64.

        Raises:
            ValueError: bad shapes, dtypes or lengths.
        """
        if waves.dim() != 2 or not waves.is_floating_point():
            raise ValueError(f"FeatureExtractor: waves must be a (B, S) float tensor, got "
                             f"{tuple(waves.shape)} {waves.dtype}")
        if wave_lens.shape != waves.shape[:1] or wave_lens.is_floating_point():
            raise ValueError(f"FeatureExtractor: wave_lens must be integer of shape "
                             f"({waves.shape[0]},), got {tuple(wave_lens.shape)} {wave_lens.dtype}")
        batch, num_samples = waves.shape
        wave_lens = wave_lens.to(device=waves.device, dtype=torch.long)
        if batch and (wave_lens.min() < 0 or wave_lens.max() > num_samples):
            raise ValueError(f"FeatureExtractor: wave_lens {wave_lens.tolist()} outside "
                             f"0..{num_samples}")
        frames = self.frame_counts(wave_lens)  # (B,)
        max_frames = num_frames(num_samples, self.cfg)
        if batch == 0 or max_frames == 0:
            empty = waves.new_zeros(batch, max_frames, self.num_features, dtype=torch.float32)
            return empty, frames  # (B, T, F), (B,)

        valid = torch.arange(num_samples, device=waves.device) < wave_lens[:, None]  # (B, S)
        x = waves.float() * valid  # (B, S), whatever was in the padding is now zero
        if self.training and self.cfg.dither > 0:
            x = x + torch.randn_like(x) * (self.cfg.dither / 32768.0) * valid
        # Place frame t at samples [t*hop, t*hop+win): torch.stft centres a short window in its
        # n_fft-point frame, so shift by the offset and pad the end so that S < win gives one frame.
        win = self.cfg.win_length
        left = (self.n_fft - win) // 2
        right = self.n_fft - win - left + max(0, win - num_samples)
        x = nn.functional.pad(x, (left, right))  # (B, S + n_fft - win [+ pad to one window])

        out = self.transform(x).transpose(1, 2)  # (B, F, T) -> (B, T, F)
        if self.cfg.kind == "spectrogram":
            out = torch.log1p(out)
        elif self.cfg.kind == "fbank":
            out = torch.log(out + _LOG_MEL_FLOOR)
        mask = _frame_mask(frames, max_frames)  # (B, T, 1)
        return out * mask, frames

    def forward(self, waves: Tensor, wave_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized features; see ``raw`` for arguments, returns and errors."""
        feats, frames = self.raw(waves, wave_lens)  # (B, T, F), (B,)
        mask = _frame_mask(frames, feats.shape[1])  # (B, T, 1)
        if self.cfg.normalize == "utterance":
            count = frames.clamp_min(1).to(feats.dtype)[:, None, None]  # (B, 1, 1)
            mean = feats.sum(dim=1, keepdim=True) / count  # (B, 1, F); padded frames are zero
            var = (((feats - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count  # (B, 1, F)
            feats = (feats - mean) / var.sqrt().clamp_min(_STD_FLOOR)
        elif self.cfg.normalize == "global":
            feats = (feats - self.cmvn_mean) / self.cmvn_std
        return feats * mask, frames

    def extra_repr(self) -> str:
        return f"cfg={self.cfg}, n_fft={self.n_fft}"


def _frame_mask(frames: Tensor, max_frames: int) -> Tensor:
    """(B, T, 1) bool, true on the first ``frames[b]`` frames of each row."""
    return (torch.arange(max_frames, device=frames.device) < frames[:, None]).unsqueeze(-1)


@torch.no_grad()
def compute_cmvn(
    extractor: FeatureExtractor, waves: Iterable[np.ndarray | Tensor]
) -> tuple[Tensor, Tensor]:
    """Global per-feature mean and std of un-normalized features, one utterance at a time.

    Sums and sums of squares are kept in float64, so memory is bounded by the longest utterance.
    The extractor runs in eval mode (no dither) and is returned to its previous mode.

    Args:
        extractor: supplies the features (its ``raw`` method) and the device.
        waves: 1-D waveforms (S,) as numpy arrays or tensors.

    Returns:
        mean, std: (F,) float32 on the extractor's device; std is floored at 1e-5. Pass them to
        ``extractor.set_cmvn``.

    Raises:
        ValueError: a waveform is not 1-D, or no frames at all were seen.
    """
    device = extractor.cmvn_mean.device
    total = torch.zeros(extractor.num_features, dtype=torch.float64, device=device)  # (F,)
    total_sq = torch.zeros_like(total)  # (F,)
    count, was_training = 0, extractor.training
    extractor.eval()
    try:
        for i, wave in enumerate(waves):
            wave = torch.as_tensor(wave, device=device)
            if wave.dim() != 1:
                raise ValueError(f"compute_cmvn: waveform {i} has shape {tuple(wave.shape)}, "
                                 "expected (S,)")
            feats, frames = extractor.raw(wave[None], torch.tensor([wave.numel()], device=device))
            feats = feats[0, : int(frames[0])].double()  # (T, F)
            total += feats.sum(dim=0)
            total_sq += (feats**2).sum(dim=0)
            count += feats.shape[0]
    finally:
        extractor.train(was_training)
    if count == 0:
        raise ValueError("compute_cmvn: no feature frames in the given waveforms")
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt().clamp_min(_STD_FLOOR)
    logger.info("cmvn frames=%d kind=%s", count, extractor.cfg.kind)
    return mean.float(), std.float()

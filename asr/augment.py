"""Training-time augmentation: SpecAugment masks on features, speed perturbation and gain on waveforms.

All randomness comes from torch's global generator, which the trainer seeds and stores in its
checkpoints, so augmented runs are deterministic under a seed and resume exactly. Every transform
is off in eval mode (``SpecAugment``) or only ever applied by the training dataset (waveforms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import Tensor, nn


@dataclass(frozen=True)
class AugmentConfig:
    freq_masks: int = 0  # SpecAugment frequency masks per utterance
    freq_mask_width: int = 0  # max bins per frequency mask (width drawn from [0, max])
    time_masks: int = 0  # SpecAugment time masks per utterance
    time_mask_width: int = 0  # max frames per time mask
    time_mask_ratio: float = 0.2  # a time mask covers at most this fraction of the utterance
    speed_factors: tuple[float, ...] = ()  # e.g. [0.9, 1.0, 1.1]: one drawn per utterance (resampling)
    gain_db: float = 0.0  # random gain drawn from [-gain_db, +gain_db] dB

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.time_mask_ratio <= 1:
            raise ValueError(f"augment.time_mask_ratio must be in [0, 1], got {self.time_mask_ratio}")
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(f"augment.speed_factors must lie in [0.5, 2], got {list(self.speed_factors)}")
        if self.gain_db < 0:
            raise ValueError(f"augment.gain_db must be >= 0, got {self.gain_db}")

    @property
    def spec_augment(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_width > 0) or (self.time_masks > 0 and self.time_mask_width > 0)

    @property
    def wave_augment(self) -> bool:
        return any(f != 1.0 for f in self.speed_factors) or self.gain_db > 0


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019) on a padded feature batch, training mode only.

    Masked cells are set to 0, the mean of normalized features. Time masks stay inside each
    utterance's valid frames, so padding never changes where a mask falls.
    """

    def __init__(self, cfg: AugmentConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """(B, T, F), (B,) -> (B, T, F); identity in eval mode."""
        if not self.training or not self.cfg.spec_augment:
            return feats
        B, T, F = feats.shape
        keep = torch.ones(B, T, F, dtype=torch.bool, device=feats.device)
        bins = torch.arange(F, device=feats.device)  # (F,)
        frames = torch.arange(T, device=feats.device)  # (T,)
        lens_f = lens.to(feats.device).float()  # (B,)
        if self.cfg.freq_mask_width > 0:
            for _ in range(self.cfg.freq_masks):
                width = torch.randint(0, min(self.cfg.freq_mask_width, F) + 1, (B,)).to(feats.device)  # (B,)
                start = (torch.rand(B).to(feats.device) * (F - width + 1)).floor()  # (B,)
                band = (bins[None] >= start[:, None]) & (bins[None] < (start + width)[:, None])  # (B, F)
                keep &= ~band[:, None, :]
        if self.cfg.time_mask_width > 0:
            max_width = torch.minimum(torch.full_like(lens_f, self.cfg.time_mask_width),
                                      (lens_f * self.cfg.time_mask_ratio).floor())  # (B,)
            for _ in range(self.cfg.time_masks):
                width = (torch.rand(B).to(feats.device) * (max_width + 1)).floor()  # (B,)
                start = (torch.rand(B).to(feats.device) * (lens_f - width + 1)).floor()  # (B,)
                span = (frames[None] >= start[:, None]) & (frames[None] < (start + width)[:, None])  # (B, T)
                keep &= ~span[:, :, None]
        return feats * keep


class WaveAugment:
    """Speed perturbation (resampling, so pitch and tempo change together) and random gain.

    A callable on one waveform (S,) -> (S',); ``S' ~ S / factor`` for speed factor ``factor``.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg = cfg
        self.sample_rate = sample_rate

    def __call__(self, wave: Tensor) -> Tensor:
        if self.cfg.speed_factors:
            factor = self.cfg.speed_factors[int(torch.randint(len(self.cfg.speed_factors), ()))]
            wave = speed_perturb(wave, factor, self.sample_rate)
        if self.cfg.gain_db > 0:
            gain_db = (torch.rand(()) * 2 - 1) * self.cfg.gain_db
            wave = wave * float(10 ** (gain_db / 20))
        return wave


def speed_perturb(wave: Tensor, factor: float, sample_rate: int) -> Tensor:
    """Play ``wave`` ``factor`` times faster: resample from ``rate * factor`` to ``rate``.

    >>> speed_perturb(torch.zeros(16000), 1.1, 16000).shape
    torch.Size([14546])
    """
    if factor == 1.0:
        return wave
    orig = int(round(sample_rate * factor))
    divisor = _gcd(orig, sample_rate)
    return AF.resample(wave, orig // divisor, sample_rate // divisor)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a

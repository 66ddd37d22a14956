"""Training-time augmentation: SpecAugment (time warp, frequency and time masks) on features; edge
trimming, speed perturbation, additive noise at a sampled SNR and gain on waveforms.

SpecAugment draws from torch's global generator, which the trainer seeds anew at each step from
(seed, rank, step); the waveform transforms draw from the generator they are given, which the
training dataset seeds from (seed, epoch, utterance). So augmented runs are deterministic under a
seed, the same with any number of loader workers, and resume exactly. Every transform
is the identity in eval mode, and the trainer gives the waveform transforms to the training
dataset only: dev scoring and evaluation never see them.

A noise manifest is an ordinary JSON-lines manifest (``asr.manifest``) of noise recordings;
``text`` may be empty. Its recordings are checked when ``NoiseSource`` is built: one whose header
cannot be read, or whose audio is shorter than the manifest says, is left out (one warning); a
segment that fails to decode later is warned about and replaced by another draw, so that the draws
depend on the seed and the files only (see :class:`NoiseSource`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
import torchaudio.functional as AF
from torch import Tensor, nn

from asr.audio import AudioError, AudioInfo, audio_headers, load_audio
from asr.config import check_ranges, check_types
from asr.manifest import ManifestError, Utterance, duration_off, read_manifest
from asr.read_notes import collected
from asr.waveform import RESAMPLING_FILTER

logger = collected(logging.getLogger(__name__))  # per-item warnings: asr.read_notes


@dataclass(frozen=True)
class AugmentConfig:
    freq_masks: int = 0  # SpecAugment frequency masks per utterance
    freq_mask_width: int = 0  # max bins per frequency mask (width drawn from [0, max])
    time_masks: int = 0  # SpecAugment time masks per utterance
    time_mask_width: int = 0  # max frames per time mask
    time_mask_ratio: float = 0.2  # a time mask covers at most this fraction of the utterance
    speed_factors: tuple[float, ...] = ()  # e.g. [0.9, 1.0, 1.1]: one drawn per utterance (resampling)
    gain_db: float = 0.0  # random gain drawn from [-gain_db, +gain_db] dB
    time_warp: int = 0  # SpecAugment time warp: max frames the warp point moves (0: off)
    noise_manifest: str = ""  # JSON-lines manifest of noise recordings ("": no additive noise)
    noise_prob: float = 1.0  # fraction of utterances that get noise (when noise_manifest is set)
    noise_snr_db: tuple[float, float] = (10.0, 30.0)  # SNR drawn uniformly from [low, high] dB
    edge_trim: float = 0.0  # cut a share drawn from [0, edge_trim] of the waveform off each end

    def __post_init__(self) -> None:
        check_types(self, "augment.")
        # also finite and bounded: an infinite gain_db or noise_snr_db trained a NaN model (60 dB: 1000x
        # the amplitude); a mask is a Python loop step, so a billion of them never end
        check_ranges(self, "augment.", freq_masks=(0, 1000), freq_mask_width=(0, None), time_masks=(0, 1000),
                     time_mask_width=(0, None), gain_db=(0, 60), noise_snr_db=(-100, 100))
        if not 0 <= self.time_mask_ratio <= 1:
            raise ValueError(f"augment.time_mask_ratio must be in [0, 1], got {self.time_mask_ratio}")
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(f"augment.speed_factors must lie in [0.5, 2], got {list(self.speed_factors)}")
        if not 0 <= self.edge_trim < 0.5:
            raise ValueError(f"augment.edge_trim must be in [0, 0.5), got {self.edge_trim}")
        if self.time_warp < 0:
            raise ValueError(f"augment.time_warp must be >= 0, got {self.time_warp}")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError(f"augment.noise_prob must be in [0, 1], got {self.noise_prob}")
        if len(self.noise_snr_db) != 2 or not self.noise_snr_db[0] <= self.noise_snr_db[1]:
            raise ValueError(f"augment.noise_snr_db must be [low, high] with low <= high, got {list(self.noise_snr_db)}")

    @property
    def spec_augment(self) -> bool:
        return ((self.freq_masks > 0 and self.freq_mask_width > 0) or (self.time_masks > 0 and self.time_mask_width > 0)
                or self.time_warp > 0)

    @property
    def add_noise(self) -> bool:
        return bool(self.noise_manifest) and self.noise_prob > 0

    @property
    def wave_augment(self) -> bool:
        return (any(f != 1.0 for f in self.speed_factors) or self.gain_db > 0 or self.add_noise
                or self.edge_trim > 0)


class SpecAugment(nn.Module):
    """Time warp, frequency and time masks (Park et al. 2019) on a padded feature batch, training mode only.

    The time warp (``time_warp`` > 0) moves a random point of each utterance's valid frames by up
    to ``time_warp`` frames, stretching the frames before it and squeezing those after it (or the
    reverse) by linear interpolation; the length is unchanged. Masked cells are set to 0, the mean
    of normalized features. Warps and time masks stay inside each utterance's valid frames, so
    padding never changes where they fall.
    """

    def __init__(self, cfg: AugmentConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """(B, T, F), (B,) -> (B, T, F); identity in eval mode."""
        if not self.training or not self.cfg.spec_augment:
            return feats
        if self.cfg.time_warp > 0:
            feats = time_warp(feats, lens, self.cfg.time_warp)  # (B, T, F)
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
    """Edge trimming, speed perturbation (resampling, so pitch and tempo change together),
    additive noise, gain.

    A callable on one waveform (S,) -> (S',); ``S' ~ S / factor`` for speed factor ``factor``.
    Edge trimming (``edge_trim`` > 0) cuts a share drawn from [0, edge_trim] off the start and,
    independently, off the end, as a recording cut tightly around the speech would be: it is meant
    for short utterances (isolated words) whose tests hold such recordings; the transcript is kept,
    so keep ``edge_trim`` small enough that no whole sound goes. Noise is mixed after the speed
    change and before the gain, so the gain keeps the SNR.
    ``eval()`` makes it the identity, ``train()`` turns it back on.

    Random draws come from the ``generator`` of each call (torch's global generator when None).

    Raises:
        ManifestError: the noise manifest cannot be read or holds no usable recording.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.training = True
        self.noise = NoiseSource(cfg.noise_manifest, sample_rate) if cfg.add_noise else None

    def train(self, mode: bool = True) -> WaveAugment:
        self.training = mode
        return self

    def eval(self) -> WaveAugment:
        return self.train(False)

    def __call__(self, wave: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.training:
            return wave
        if self.cfg.edge_trim > 0:
            wave = trim_edges(wave, self.cfg.edge_trim, generator)
        if self.cfg.speed_factors:
            factor = self.cfg.speed_factors[int(torch.randint(len(self.cfg.speed_factors), (), generator=generator))]
            wave = speed_perturb(wave, factor, self.sample_rate)
        if self.noise is not None and float(torch.rand((), generator=generator)) < self.cfg.noise_prob:
            low, high = self.cfg.noise_snr_db
            snr_db = low + float(torch.rand((), generator=generator)) * (high - low)
            wave = mix_at_snr(wave, self.noise.sample(len(wave), generator), snr_db)
        if self.cfg.gain_db > 0:
            gain_db = (torch.rand((), generator=generator) * 2 - 1) * self.cfg.gain_db
            wave = wave * float(10 ** (gain_db / 20))
        return wave


class NoiseSource:
    """Random noise segments from the recordings of a noise manifest.

    ``sample(num_samples)`` picks a recording at random (from the generator it is given, torch's
    global generator when None); a longer one gives a segment at a random offset (only that segment
    is read), a shorter one is looped.

    The recordings are checked once, here (in the main process, before loader workers fork): those
    whose header cannot be read, or whose audio is shorter than the manifest says by more than the
    tolerance of :func:`asr.manifest.duration_off`, are left out with one warning. The list of
    candidates never changes after that, so a draw depends only on its generator and on the files,
    not on the number of workers or on what was drawn before.

    Raises:
        ManifestError: the manifest cannot be read, or holds no recording, or none that passes the check.
    """

    def __init__(self, manifest: str, sample_rate: int):
        self.manifest = manifest
        self.sample_rate = sample_rate
        listed = read_manifest(manifest, skip_bad=True)
        if not listed:
            raise ManifestError(manifest, None, "noise manifest holds no usable recording")
        self.utts: list[Utterance] = []
        self.spans_s: list[float] = []  # seconds of audio each of ``utts`` holds, from its offset
        left_out: list[str] = []
        headers = audio_headers(u.audio_filepath for u in listed)  # a file several segments share: read once
        for utt in listed:
            span_s = _noise_span(utt, headers[utt.audio_filepath])
            if isinstance(span_s, str):
                left_out.append(utt.located(span_s))
            else:
                self.utts.append(utt)
                self.spans_s.append(span_s)
        if not self.utts:
            raise ManifestError(manifest, None, f"no usable recording: none of its {len(listed)} noise recordings "
                                f"has a readable header and the duration the manifest says, e.g. {left_out[0]}")
        if left_out:
            logger.warning("%s: %d of %d noise recordings left out (header unreadable, or audio shorter than the "
                           "manifest says), e.g. %s", manifest, len(left_out), len(listed), left_out[0])
        self._warned: set[str] = set()  # files whose decoding failed in this process (warned once)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """A noise segment of exactly ``num_samples`` samples, float32 (S,).

        A segment that fails to decode (damage inside compressed data, which headers do not show)
        is warned about once per file and process, and another recording is drawn from the same
        generator; the failed one stays a candidate (another segment of it may decode). So the
        result depends only on the generator and the files, whether or not a failure was seen
        before.

        Raises:
            ManifestError: every recording of the manifest failed within this one draw.
        """
        needed_s = num_samples / self.sample_rate
        failed: set[int] = set()  # of this draw only: what happened in earlier draws changes nothing
        while len(failed) < len(self.utts):
            index = int(torch.randint(len(self.utts), (), generator=generator))
            utt, span_s = self.utts[index], self.spans_s[index]
            offset_s, duration_s = utt.offset, (utt.duration or None)
            if span_s > needed_s + 0.1:  # long enough: read a random segment of it only
                offset_s += float(torch.rand((), generator=generator)) * (span_s - needed_s - 0.1)
                duration_s = needed_s + 0.05
            try:
                wave = load_audio(utt.audio_filepath, self.sample_rate, offset_s=offset_s, duration_s=duration_s)
            except AudioError as e:
                failed.add(index)
                if utt.audio_filepath not in self._warned:
                    self._warned.add(utt.audio_filepath)
                    logger.warning("%s: a noise segment cannot be read, another recording is drawn instead "
                                   "(warned once per file): %s", self.manifest, utt.located(str(e)))
                continue
            return loop_to_length(torch.from_numpy(np.ascontiguousarray(wave)), num_samples)  # (N,) -> (S,)
        raise ManifestError(self.manifest, None, f"none of its {len(self.utts)} noise recordings could be read "
                            "in one draw (see the warnings)")


def _noise_span(utt: Utterance, header: AudioInfo | str) -> float | str:
    """The seconds of audio ``utt`` holds for noise sampling (from its offset, at most its manifest
    duration unless that is 0), or why it is left out: its header error, or audio clearly shorter
    than the manifest says.

    >>> _noise_span(Utterance("a.wav", 2.05, ""), AudioInfo(16000, 32000, 1, 2.0))
    2.0
    >>> _noise_span(Utterance("a.wav", 4.0, ""), AudioInfo(16000, 32000, 1, 2.0))
    'a.wav: 2.00 s of audio, the manifest says 4.00 s'
    """
    if isinstance(header, str):
        return header
    rest_s = header.duration_s - utt.offset
    if rest_s <= 0:
        return (f"{utt.audio_filepath}: offset {utt.offset:.2f} s is beyond the end of the audio "
                f"({header.duration_s:.2f} s)")
    if utt.duration > rest_s and duration_off(utt.duration, rest_s):
        start = f" from {utt.offset:.2f} s" if utt.offset else ""
        return f"{utt.audio_filepath}: {rest_s:.2f} s of audio{start}, the manifest says {utt.duration:.2f} s"
    return min(utt.duration, rest_s) if utt.duration > 0 else rest_s


def trim_edges(wave: Tensor, max_share: float, generator: torch.Generator | None = None) -> Tensor:
    """``wave`` (S,) without a random share in [0, ``max_share``] of its samples at each end (drawn
    from ``generator``, torch's global one when None); a view of ``wave``.

    >>> w = torch.arange(100.)
    >>> t = trim_edges(w, 0.1)
    >>> 80 <= len(t) <= 100 and bool((t == w[int(t[0]):int(t[0]) + len(t)]).all())
    True
    """
    head = int(float(torch.rand((), generator=generator)) * max_share * len(wave))
    tail = int(float(torch.rand((), generator=generator)) * max_share * len(wave))
    return wave[head:len(wave) - tail]


def loop_to_length(wave: Tensor, num_samples: int) -> Tensor:
    """``wave`` (N,) repeated end to end and cut to ``num_samples`` samples.

    >>> loop_to_length(torch.tensor([1., 2., 3.]), 7).tolist()
    [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    """
    if len(wave) == 0:
        raise ValueError("cannot loop an empty waveform")
    repeats = math.ceil(num_samples / len(wave))
    return wave.repeat(repeats)[:num_samples]


def mix_at_snr(speech: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """``speech + g * noise`` with ``g`` such that 10 log10(P_speech / P_(g noise)) = ``snr_db``.

    Powers are mean squares over the whole (S,) signals; ``noise`` must have the same length. A
    silent speech or noise signal is returned unchanged.

    >>> s, n = torch.ones(100), torch.ones(100)
    >>> round(float((mix_at_snr(s, n, 20.0) - s).pow(2).mean()), 6)  # noise power 1 / 100
    0.01
    """
    if speech.shape != noise.shape:
        raise ValueError(f"speech {tuple(speech.shape)} and noise {tuple(noise.shape)} differ in shape")
    speech_power = float(speech.double().pow(2).mean())
    noise_power = float(noise.double().pow(2).mean())
    if speech_power == 0 or noise_power == 0:
        return speech
    gain = math.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return speech + gain * noise


def time_warp(feats: Tensor, lens: Tensor, max_warp: int) -> Tensor:
    """SpecAugment time warp of a padded batch: (B, T, F), (B,) -> (B, T, F).

    For each utterance of ``n`` valid frames (``n > 2 * max_warp + 1``; shorter ones are left
    alone), a point ``c`` in ``[max_warp + 1, n - max_warp)`` moves to ``c + w``, ``w`` uniform in
    ``[-max_warp, max_warp]``: frames ``[0, c)`` are resampled to ``c + w`` frames and ``[c, n)``
    to ``n - c - w`` (linear interpolation; the first and last valid frames stay in place).
    Padded frames are untouched.
    """
    out = feats.clone()
    for b, n in enumerate(lens.tolist()):
        if n <= 2 * max_warp + 1:
            continue
        c = int(torch.randint(max_warp + 1, n - max_warp, ()))
        w = int(torch.randint(-max_warp, max_warp + 1, ()))
        if w == 0:
            continue
        seg = feats[b, :n].T[None]  # (1, F, n)
        left = nnf.interpolate(seg[..., :c], size=c + w, mode="linear", align_corners=True)  # (1, F, c + w)
        right = nnf.interpolate(seg[..., c:], size=n - c - w, mode="linear", align_corners=True)  # (1, F, n - c - w)
        out[b, :n] = torch.cat([left, right], dim=-1)[0].T  # (n, F)
    return out


def speed_perturb(wave: Tensor, factor: float, sample_rate: int) -> Tensor:
    """Play ``wave`` ``factor`` times faster: resample from ``rate * factor`` to ``rate``.

    >>> speed_perturb(torch.zeros(16000), 1.1, 16000).shape
    torch.Size([14546])
    """
    if factor == 1.0:
        return wave
    orig = int(round(sample_rate * factor))
    divisor = _gcd(orig, sample_rate)
    return AF.resample(wave, orig // divisor, sample_rate // divisor, **RESAMPLING_FILTER)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a

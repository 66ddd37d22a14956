"""The recognizer: feature extractor, model and tokenizer, the three pieces that turn audio into text.

A :class:`Recognizer` is built by training (``asr.train``) or rebuilt from a checkpoint's payload
(:func:`recognizer_from_payload`; ``asr.checkpoint.load_recognizer`` reads the file too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from asr.config import config_from_dict
from asr.decode import Decoder, Hypothesis, greedy_decode
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, ModelConfig
from asr.tokenizer import Tokenizer, tokenizer_from_dict


@dataclass
class Recognizer:
    """The three pieces needed to turn audio into text, rebuilt from a checkpoint."""

    features: FeatureExtractor
    model: DeepSpeech2
    tokenizer: Tokenizer

    def to(self, device: torch.device | str) -> "Recognizer":
        self.features.to(device)
        self.model.to(device)
        return self

    def eval(self) -> "Recognizer":
        self.features.eval()
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextmanager
    def evaluating(self) -> Iterator["Recognizer"]:
        """Features and model in eval mode inside the block; each submodule's own mode is restored
        after it (a model left in training mode keeps training, its BatchNorm statistics untouched)."""
        modes = [(m, m.training) for part in (self.features, self.model) for m in part.modules()]
        self.eval()
        try:
            yield self
        finally:
            for module, training in modes:
                module.training = training

    def log_probs(self, waves: torch.Tensor, wave_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities of a padded batch: (B, S), (B,) -> (B, T', V), (B,).

        Computed in eval mode (see :meth:`evaluating`) without gradients; the results are ordinary
        tensors, which may be edited in place. An input shorter than :attr:`min_samples` (too short
        for a front-end without time padding) gets no output frames, length 0, which decodes to '';
        the others are computed as if it were not in the batch.
        """
        with self.evaluating(), torch.inference_mode():  # no_grad: 6-13 % slower on CPU
            feats, feat_lens = self.features(waves.to(self.device), wave_lens.to(self.device))  # (B, T, F)
            usable = self.model.output_lengths(feat_lens) > 0  # (B,)
            if bool(usable.all()):
                logits, out_lens = self.model(feats, feat_lens)  # (B, T', V)
            else:
                logits, out_lens = self._logits_of_usable(feats, feat_lens, usable)
            log_probs = logits.float().log_softmax(dim=-1)
        return log_probs.clone(), out_lens.clone()  # copies outside inference mode: ordinary tensors

    def _logits_of_usable(self, feats: torch.Tensor, feat_lens: torch.Tensor,
                          usable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits (B, T', V) and lengths (B,) with the inputs not ``usable`` (B,) left
        out: their rows are zeros (T' >= 1) and their lengths 0."""
        out_lens = torch.zeros_like(feat_lens)  # (B,)
        vocab_size = self.model.output.out_features
        if not bool(usable.any()):
            return feats.new_zeros(feats.size(0), 1, vocab_size), out_lens
        kept_lens = feat_lens[usable]  # (B',)
        kept, out_lens[usable] = self.model(feats[usable, : int(kept_lens.max())], kept_lens)  # (B', T', V), (B',)
        logits = kept.new_zeros(feats.size(0), kept.size(1), vocab_size)  # (B, T', V)
        logits[usable] = kept
        return logits, out_lens

    @property
    def min_samples(self) -> int:
        """The shortest input, in samples at the feature rate, that the model gives an output frame
        for: 1 for a front-end that pads in time (every preset), more for one that does not."""
        frames = 1
        while int(self.model.output_lengths(torch.tensor([frames]))[0]) < 1:
            frames += 1
        cfg = self.features.cfg
        return 1 if frames == 1 else cfg.win_length + (frames - 1) * cfg.hop_length

    def too_short(self, num_samples: int) -> str:
        """Why an input of ``num_samples`` (fewer than :attr:`min_samples`) gets no output, in words:
        ``'5.0 ms of audio is too short for the model (it needs 320.0 ms)'``."""
        rate = self.features.cfg.sample_rate
        return (f"{1000 * num_samples / rate:.1f} ms of audio is too short for the model "
                f"(it needs {1000 * self.min_samples / rate:.1f} ms)")

    @property
    def frame_shift_s(self) -> float:
        """Seconds between output frames: the feature hop (in whole samples, as the features
        take it) times the model's time stride."""
        num_frames = 100_000
        out_frames = int(self.model.output_lengths(torch.tensor([num_frames]))[0])
        cfg = self.features.cfg
        return cfg.hop_length / cfg.sample_rate * round(num_frames / out_frames)

    def recognize(
        self, waves: torch.Tensor, wave_lens: torch.Tensor, decoder: Decoder | None = None
    ) -> list[Hypothesis]:
        """Transcripts of a padded batch of waveforms at the feature sample rate.

        ``decoder`` maps (log-probs (B, T', V), lengths (B,)) to hypotheses, e.g. a
        ``BeamSearchDecoder``; default: greedy decoding.
        """
        log_probs, out_lens = self.log_probs(waves, wave_lens)
        if decoder is None:
            return greedy_decode(log_probs, out_lens, self.tokenizer)
        return decoder(log_probs, out_lens)


def recognizer_from_payload(payload: dict[str, Any]) -> Recognizer:
    """Rebuild feature extractor, model and tokenizer from a loaded checkpoint (eval mode, CPU).

    Raises:
        ConfigError: a stored config has unknown keys or bad values.
        ValueError: an unknown tokenizer, or weights that do not fit the stored configs.
    """
    tokenizer = tokenizer_from_dict(payload["tokenizer"])
    features = FeatureExtractor(config_from_dict(FeatureConfig, payload["features_config"]))
    _load_state(features, payload["features_state"], "features_state")
    model = DeepSpeech2(
        config_from_dict(ModelConfig, payload["model_config"]),
        num_features=features.num_features,
        vocab_size=tokenizer.vocab_size,
    )
    _load_state(model, payload["model_state"], "model_state")
    return Recognizer(features=features, model=model, tokenizer=tokenizer).eval()


def state_mismatch(module: torch.nn.Module, state: dict[str, Any]) -> str | None:
    """The first entry of ``state`` that ``module.load_state_dict`` would refuse (missing, unexpected
    or of another shape), in words; None if it fits."""
    own = module.state_dict()
    for name in own:
        if name not in state:
            return f"no {name!r}"
    for name, value in state.items():
        if name not in own:
            return f"unexpected {name!r}"
        if tuple(value.shape) != tuple(own[name].shape):
            return f"{name!r} has shape {tuple(value.shape)}, the model {tuple(own[name].shape)}"
    return None


def _load_state(module: torch.nn.Module, state: dict[str, Any], key: str) -> None:
    mismatch = state_mismatch(module, state)
    if mismatch:
        raise ValueError(f"{key}: {mismatch}")
    module.load_state_dict(state)

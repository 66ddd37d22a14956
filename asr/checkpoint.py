"""Self-contained checkpoints: configs, feature normalization, tokenizer and weights in one file.

A checkpoint is a plain dictionary of tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``. Writes are atomic: a temporary file in the same folder is
renamed over the target, so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.config import config_from_dict, config_to_dict
from asr.decode import Decoder, Hypothesis, greedy_decode
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, ModelConfig
from asr.text import Tokenizer, tokenizer_from_dict

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or not an ``asr`` checkpoint."""


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

    @torch.inference_mode()
    def log_probs(self, waves: torch.Tensor, wave_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities of a padded batch: (B, S), (B,) -> (B, T', V), (B,)."""
        feats, feat_lens = self.features(waves.to(self.device), wave_lens.to(self.device))  # (B, T, F)
        logits, out_lens = self.model(feats, feat_lens)  # (B, T', V)
        return logits.float().log_softmax(dim=-1), out_lens

    @property
    def frame_shift_s(self) -> float:
        """Seconds between output frames: the feature hop times the model's time stride."""
        num_frames = 100_000
        out_frames = int(self.model.output_lengths(torch.tensor([num_frames]))[0])
        return self.features.cfg.hop_ms / 1000 * round(num_frames / out_frames)

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


def checkpoint_payload(
    recognizer: Recognizer, config: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """The dictionary that ``save_checkpoint`` writes; ``extra`` adds e.g. ``train_state``, ``metrics``.

    The weights are copied to the CPU (one copy, from any device): later updates of the live model
    do not reach the payload, so another thread may write it while training goes on.
    """
    payload = {
        "format": FORMAT_VERSION,
        "features_config": config_to_dict(recognizer.features.cfg),
        "model_config": config_to_dict(recognizer.model.cfg),
        "tokenizer": recognizer.tokenizer.to_dict(),
        "features_state": {k: v.detach().to("cpu", copy=True) for k, v in recognizer.features.state_dict().items()},
        "model_state": {k: v.detach().to("cpu", copy=True) for k, v in recognizer.model.state_dict().items()},
        "config": config or {},
    }
    payload.update(extra)
    return payload


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is at the end
        raise CheckpointError(f"{path}: not a readable checkpoint (not the zip archive torch.save "
                              "writes: another kind of file, or a checkpoint cut short)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({_load_failure(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an asr checkpoint (format {FORMAT_VERSION} expected)")
    return payload


def _load_failure(e: Exception) -> str:
    """The cause of a failed ``torch.load``, in one line and without torch's advice to load unsafely."""
    text = str(e).strip()
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:  # a pickle of Python objects, e.g. another toolkit's checkpoint with its classes
        return f"it holds Python objects ({unsafe.group(1)}), not only tensors and plain data"
    return text.splitlines()[0] if text else type(e).__name__


EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export_payload(payload: dict[str, Any], dtype: str = "fp16") -> dict[str, Any]:
    """An inference checkpoint made from any checkpoint: training state dropped, model weights in ``dtype``.

    ``fp16`` halves the file of ``model.pt`` and makes ``last.pt`` (weights, Adam moments, EMA) 6-8
    times smaller. Loading casts the weights back to the model's float32, so ``asr transcribe``,
    ``evaluate`` and ``init_from`` read the file as they read any checkpoint. Integer buffers and the
    feature normalization statistics keep their types: CMVN is small and rounding it would shift every
    feature. ``metrics`` records the source file's metrics and the dtype.

    Raises:
        CheckpointError: ``dtype`` is not one of ``EXPORT_DTYPES``.
    """
    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"export: dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    out = {k: v for k, v in payload.items() if k != "train_state"}
    out["model_state"] = {k: v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v
                          for k, v in payload["model_state"].items()}
    out["metrics"] = {**payload.get("metrics", {}), "dtype": dtype}
    return out


def write_export(src: str | Path, out: str | Path, dtype: str = "fp16") -> Path:
    """``export_payload(load_checkpoint(src), dtype)`` written to ``out``; refuses to overwrite a file.

    Raises:
        CheckpointError: ``out`` exists, ``src`` is unreadable, or ``dtype`` is unknown.
    """
    out = Path(out)
    if out.exists():
        raise CheckpointError(f"{out}: already exists; refusing to overwrite it")
    payload = export_payload(load_checkpoint(src), dtype)
    payload["metrics"]["exported_from"] = str(src)
    save_checkpoint(payload, out)
    return out


def recognizer_from_payload(payload: dict[str, Any]) -> Recognizer:
    """Rebuild feature extractor, model and tokenizer from a loaded checkpoint (eval mode, CPU)."""
    tokenizer = tokenizer_from_dict(payload["tokenizer"])
    features = FeatureExtractor(config_from_dict(FeatureConfig, payload["features_config"]))
    features.load_state_dict(payload["features_state"])
    model = DeepSpeech2(
        config_from_dict(ModelConfig, payload["model_config"]),
        num_features=features.num_features,
        vocab_size=tokenizer.vocab_size,
    )
    model.load_state_dict(payload["model_state"])
    return Recognizer(features=features, model=model, tokenizer=tokenizer).eval()


def load_recognizer(path: str | Path, device: str | torch.device = "cpu") -> Recognizer:
    """``recognizer_from_payload(load_checkpoint(path))`` moved to ``device``.

    Raises:
        CheckpointError: unreadable checkpoint, or ``device`` is unknown or not present here.
    """
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: cannot use device {str(device)!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"{path}: device {str(device)!r} asked for, but this machine has no CUDA device")
    return recognizer_from_payload(load_checkpoint(path)).to(device)

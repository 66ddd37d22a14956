"""Self-contained checkpoints: configs, feature normalization, tokenizer and weights in one file.

A checkpoint is a plain dictionary of tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``. Writes are atomic: a temporary file in the same folder is
renamed over the target, so an interrupted save never leaves a truncated checkpoint behind.
Reading one checks its zip archive's checksums and its layout before anything is rebuilt from it
(:func:`load_checkpoint`, :func:`load_recognizer`); an export drops the training state and rounds
the weights (:func:`write_export`). The recognizer it holds is :class:`asr.recognizer.Recognizer`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import torch

from asr.config import ConfigError, config_to_dict
from asr.outputs import atomic_output, check_output_folder
from asr.recognizer import Recognizer, recognizer_from_payload

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or not an ``asr`` checkpoint."""


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
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename).

    Raises:
        OSError: the system refused a write (a full disk, a file size limit), naming ``path``;
            torch.save itself reports that only as a RuntimeError ('unexpected pos ...').
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, durable=True) as tmp, open(tmp, "wb") as f:
        writer = _Writer(f)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise type(writer.error)(writer.error.errno, writer.error.strerror, str(path)) from None


class _Writer:
    """A file's ``write`` for torch.save, keeping the first OSError it raised (torch.save replaces
    it with a RuntimeError that does not say what happened)."""

    def __init__(self, f: Any):
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, once its zip archive's checksums are checked;
    raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {'a folder, not a checkpoint file' if path.is_dir() else 'no such checkpoint file'}")
    try:  # is_zipfile(path) would call a file it may not open no zip archive
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
            damage = _zip_damage(f) if is_zip else None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    if not is_zip:  # torch.save writes a zip archive; its index is at the end
        raise CheckpointError(f"{path}: not a readable checkpoint (not the zip archive torch.save "
                              "writes: another kind of file, or a checkpoint cut short)")
    if damage:  # torch.load does not check the archive's checksums: damaged weights would load
        raise CheckpointError(f"{path}: not a readable checkpoint (a damaged file: {damage})")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({_load_failure(e)})") from None
    version = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not an asr checkpoint (format {FORMAT_VERSION} expected)")
    if version != FORMAT_VERSION:  # an asr checkpoint of another version of the toolkit
        raise CheckpointError(f"{path}: checkpoint format {version}; this asr reads format {FORMAT_VERSION}"
                              + (" (the file was written by a newer asr)" if version > FORMAT_VERSION else ""))
    damage = _structure_problem(payload)
    if damage:  # e.g. edited by hand, or written by other code
        raise CheckpointError(f"{path}: not a usable asr checkpoint: {damage}")
    return payload


def _zip_damage(f: BinaryIO) -> str | None:
    """What is wrong with the zip archive open in ``f`` (a member whose bytes fail its CRC-32, an
    index that points elsewhere: a copy that went wrong, bytes overwritten), or None. Reads the
    whole file, at about 1 GB/s."""
    try:
        with zipfile.ZipFile(f) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        return f"its zip archive is inconsistent ({e})"
    except OSError as e:
        if e.errno != errno.EINVAL:  # a failing disk: reported as the read error it is
            raise
        return "its zip index points outside the file; a part is missing"  # a seek before the start
    return f"{bad} fails its checksum" if bad else None


_REQUIRED_DICTS = ("features_config", "model_config", "tokenizer", "features_state", "model_state")
_OPTIONAL_DICTS = ("config", "metrics", "train_state")


def _structure_problem(payload: dict[str, Any]) -> str | None:
    """What is missing or of the wrong type in a checkpoint payload, or None if its layout is whole."""
    for key in _REQUIRED_DICTS + _OPTIONAL_DICTS:
        if key not in payload:
            if key in _REQUIRED_DICTS:
                return f"{key!r} is missing"
        elif not isinstance(payload[key], dict) and not (key == "config" and payload[key] is None):
            return f"{key!r} is a {type(payload[key]).__name__}, not a dict"
    for key in ("features_state", "model_state"):
        for name, value in payload[key].items():
            if not isinstance(value, torch.Tensor):
                return f"{key}[{name!r}] is a {type(value).__name__}, not a tensor"
    if not isinstance(payload["tokenizer"].get("type"), str):
        return "'tokenizer' has no 'type'"
    return None


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` ('cpu', 'cuda', 'cuda:1', ...) as a ``torch.device``, once checked to hold tensors here.

    Raises:
        ValueError: torch knows no such device, this machine or torch build lacks it, or it holds no
            data ('meta').

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    try:
        with warnings.catch_warnings():  # torch warns of deprecated names such as 'mkldnn'
            warnings.simplefilter("ignore")
            parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError("not a device torch knows (e.g. cpu, cuda, cuda:1)") from None
    if parsed.type == "meta":
        raise ValueError("'meta' tensors hold no data; use cpu or cuda")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("this machine has no CUDA device")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 and up")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.empty(1, device=parsed)
    except Exception:  # noqa: BLE001 (torch raises many types for a backend it was built without)
        raise ValueError(f"this machine or this torch build cannot put tensors on {parsed.type!r}") from None
    return parsed


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
        CheckpointError: ``dtype`` is not one of ``EXPORT_DTYPES``, or a finite weight is too large
            for it (fp16 ends at 65504: it would become infinite).
    """
    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"export: dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    out = {k: v for k, v in payload.items() if k != "train_state"}
    out["model_state"] = {k: v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v
                          for k, v in payload["model_state"].items()}
    for name, value in payload["model_state"].items():
        if value.is_floating_point():
            overflow = torch.isinf(out["model_state"][name]) & torch.isfinite(value)
            if bool(overflow.any()):  # e.g. a BatchNorm variance of unnormalized features
                raise CheckpointError(f"{name} holds {value[overflow].abs().max().item():.4g}, beyond the range "
                                      f"of {dtype}; it would become infinite (bf16 has float32's range)")
    out["metrics"] = {**payload.get("metrics", {}), "dtype": dtype}
    return out


def warn_of_unused_ema(payload: dict[str, Any], path: str | Path) -> None:
    """Log a warning when ``payload`` (a ``last.pt`` of a run with ``ema_decay``) holds a moving
    average of its weights in its training state, which a command that takes ``model_state`` drops."""
    train_state = payload.get("train_state")
    if isinstance(train_state, dict) and isinstance(train_state.get("ema"), dict):
        logger.warning("%s: its weights are the trained ones; their moving average (EMA), in its training state, "
                       "is dropped (model.pt, best.pt and the epoch checkpoints of the run hold the EMA)", path)


def new_checkpoint_path(out: str | Path) -> Path:
    """``out`` as the path of a new checkpoint, checked before the work: nothing may be there yet,
    and its folder must be able to take a file.

    Raises:
        CheckpointError: ``out`` exists (a link too, even one to nothing: it is the user's), or is a folder.
        OutputError: its folder cannot be one (see :func:`asr.outputs.check_output_folder`).
    """
    out = Path(out)
    if out.is_dir():  # --out names the file, not a folder to put it in
        raise CheckpointError(f"{out}: a folder; name the new checkpoint file (e.g. {out / 'model.pt'})")
    if os.path.lexists(out):
        raise CheckpointError(f"{out}: already exists; refusing to overwrite it")
    check_output_folder(out.parent)
    return out


def write_export(src: str | Path, out: str | Path, dtype: str = "fp16") -> Path:
    """``export_payload(load_checkpoint(src), dtype)`` written to ``out``; refuses to overwrite a file.
    A warning says when ``src`` holds weights already rounded to another half precision (an export).

    Raises:
        CheckpointError: ``out`` exists, ``src`` is unreadable or damaged, or ``dtype`` is unknown.
        OutputError: ``out``'s folder cannot take a file (checked before ``src`` is read).
    """
    out = new_checkpoint_path(out)
    source = load_checkpoint(src)
    rebuild_recognizer(source, src)  # no file is written from a checkpoint that cannot be used
    warn_of_unused_ema(source, src)
    try:
        payload = export_payload(source, dtype)
    except CheckpointError as e:  # a weight out of the dtype's range, an unknown dtype
        raise CheckpointError(f"{src}: {e}") from None
    rounded = {name for name, held in EXPORT_DTYPES.items() if held != torch.float32 and held != EXPORT_DTYPES[dtype]
               and any(v.dtype == held for v in source["model_state"].values())}
    for name in sorted(rounded):  # an export of an export: the precision lost is not brought back
        logger.warning("%s: its weights are already rounded to %s; as %s they keep that rounding", src, name, dtype)
    payload["metrics"]["exported_from"] = str(src)
    save_checkpoint(payload, out)
    return out


def load_recognizer(path: str | Path, device: str | torch.device = "cpu") -> Recognizer:
    """``recognizer_from_payload(load_checkpoint(path))`` moved to ``device``.

    Raises:
        CheckpointError: unreadable or damaged checkpoint, or ``device`` is unknown or not usable here
            (see :func:`resolve_device`).
    """
    try:
        device = resolve_device(device)
    except ValueError as e:
        raise CheckpointError(f"{path}: cannot use device {str(device)!r}: {e}") from None
    return rebuild_recognizer(load_checkpoint(path), path).to(device)


def rebuild_recognizer(payload: dict[str, Any], path: str | Path) -> Recognizer:
    """``recognizer_from_payload(payload)``; parts that do not fit together (a checkpoint edited by
    hand, or written by other code) raise ``CheckpointError`` naming ``path``."""
    try:
        return recognizer_from_payload(payload)
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{path}: not a usable asr checkpoint: {e}") from None

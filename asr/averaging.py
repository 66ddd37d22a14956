"""Weight averaging: an exponential moving average (EMA) of the weights during training, and the
average of several checkpoints of one run after it (``asr average CKPT... --out FILE``).

Both smooth the end of an optimization trajectory, which usually lowers WER a little at no cost
at inference time.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr.checkpoint import (EXPORT_DTYPES, CheckpointError, load_checkpoint, new_checkpoint_path, rebuild_recognizer,
                            save_checkpoint, warn_of_unused_ema)
from asr.paths import path_list


class ModelEMA:
    """An exponential moving average of a model's weights, kept in a copy of the model.

    After update number ``t`` (1-based), every floating-point entry of the state dict
    (parameters and BatchNorm running statistics) is ``ema = d_t * ema + (1 - d_t) * weight`` with
    ``d_t = min(decay, (1 + t) / (10 + t))``: the warm-up (as in TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``) keeps the random initial weights from
    lingering in the average of a short run. Integer entries are copied.

    Args:
        model: the model being trained; copied (and put in eval mode) as the average's holder.
        decay: the decay per update, in [0, 1).

    Example:
        >>> model = nn.Linear(1, 1, bias=False)
        >>> ema = ModelEMA(model, decay=0.9)
        >>> ema.decay_at(1), ema.decay_at(100)  # warm-up, then the configured decay
        (0.18181818181818182, 0.9)
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        for m in self.module.modules():  # a copy's cuDNN RNN weights lie apart, compacted at every call
            if isinstance(m, nn.RNNBase):
                m.flatten_parameters()  # (with a warning at the first); on the CPU it does nothing

    def decay_at(self, num_updates: int) -> float:
        """The decay used by update number ``num_updates`` (1-based)."""
        return min(self.decay, (1 + num_updates) / (10 + num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture) into the average."""
        self.num_updates += 1
        d = self.decay_at(self.num_updates)
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            weight = current[name].detach()
            if avg.is_floating_point():
                avg.mul_(d).add_(weight.to(avg.dtype), alpha=1 - d)
            else:
                avg.copy_(weight)

    def state_dict(self) -> dict[str, Any]:
        """What ``load_state_dict`` restores: decay, update count and the averaged weights (CPU)."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "weights": {k: v.detach().cpu() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["weights"])


def average_checkpoints(paths: list[str | Path] | str | Path) -> dict[str, Any]:
    """The average of the model weights of several checkpoints of one run, as a checkpoint payload.

    ``paths`` lists the checkpoint files; a single path (a string or ``Path``) is one file. They
    are read one at a time (the last first), so memory holds two checkpoints and the running sums,
    however many are averaged.

    Floating-point weights are averaged (in float64) and stored in the widest precision of the
    inputs: an exported fp16 checkpoint averaged with fp32 ones gives fp32 weights, whichever comes
    last. Integer buffers (such as BatchNorm's ``num_batches_tracked``) are taken from the last
    checkpoint, and so are the feature normalization, the tokenizer, the configs and the training
    metrics. Training state is dropped: the result is an inference checkpoint; its ``metrics`` name
    the averaged files, and its ``dtype`` when the weights are not float32.

    Raises:
        CheckpointError: no checkpoint given, an unreadable or damaged one, or one of another run:
            its architecture (model or feature config, vocabulary, weight names or shapes) or its
            feature normalization (CMVN) differs from the last's; or one holds NaN or infinite weights.
    """
    paths = path_list(paths)
    if not paths:
        raise CheckpointError("average: no checkpoints given")
    ref_path = paths[-1]
    ref = load_checkpoint(ref_path)
    warn_of_unused_ema(ref, ref_path)
    ref.pop("train_state", None)  # an inference checkpoint; Adam's moments need not stay in memory
    rebuild_recognizer(ref, ref_path)  # the others must match it, name for name and shape for shape
    _check_finite(ref_path, ref)
    totals = {name: t.double() for name, t in ref["model_state"].items() if t.is_floating_point()}
    dtypes = {name: ref["model_state"][name].dtype for name in totals}
    for path in paths[:-1]:
        payload = load_checkpoint(path)
        _check_same_run(path, payload, ref_path, ref)
        _check_finite(path, payload)
        warn_of_unused_ema(payload, path)
        for name, total in totals.items():
            weight = payload["model_state"][name]
            total += weight.double()
            dtypes[name] = torch.promote_types(dtypes[name], weight.dtype)  # fp16 and bf16: fp32
        del payload
    averaged = {name: (totals[name] / len(paths)).to(dtypes[name]) if name in totals else last.clone()
                for name, last in ref["model_state"].items()}
    out = dict(ref)
    out["model_state"] = averaged
    metrics = {k: v for k, v in ref.get("metrics", {}).items() if k not in ("dtype", "exported_from")}
    kept = {dtypes[name] for name in totals}  # the last file's dtype and source describe that file only
    if kept and torch.float32 not in kept:
        metrics["dtype"] = next(k for k, v in EXPORT_DTYPES.items() if v in kept)
    out["metrics"] = {**metrics, "averaged_from": [str(p) for p in paths]}
    return out


def write_average(paths: list[str | Path] | str | Path, out: str | Path) -> Path:
    """``average_checkpoints(paths)`` written to ``out``; refuses to overwrite an existing file.

    Raises:
        CheckpointError: ``out`` exists, or see ``average_checkpoints``.
        OutputError: ``out``'s folder cannot take a file (checked before any checkpoint is read).
    """
    out = new_checkpoint_path(out)
    save_checkpoint(average_checkpoints(paths), out)
    return out


def _check_same_run(path: str | Path, payload: dict[str, Any], ref_path: str | Path, ref: dict[str, Any]) -> None:
    for key, what in (("model_config", "model config"), ("features_config", "feature config"),
                      ("tokenizer", "tokenizer")):
        if payload[key] != ref[key]:
            diff = _first_difference(payload[key], ref[key])
            raise CheckpointError(f"{path}: {what} differs from {ref_path}'s{diff}; cannot average")
    state, ref_state = payload["model_state"], ref["model_state"]
    if state.keys() != ref_state.keys():
        names = sorted(set(state) ^ set(ref_state))
        raise CheckpointError(f"{path}: weight names differ from {ref_path}'s (e.g. {names[0]}); cannot average")
    for name, tensor in state.items():
        if tensor.shape != ref_state[name].shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, {ref_path} "
                                  f"{tuple(ref_state[name].shape)}; cannot average")
    for name, tensor in payload["features_state"].items():  # CMVN: set once per run, kept by init_from
        if name not in ref["features_state"] or not torch.equal(tensor, ref["features_state"][name]):
            raise CheckpointError(f"{path}: feature normalization ({name}) differs from {ref_path}'s: "
                                  "a checkpoint of another run; cannot average")


def _check_finite(path: str | Path, payload: dict[str, Any]) -> None:
    """A NaN or infinite weight (a run that diverged) would make the same weight of the average one."""
    for name, tensor in payload["model_state"].items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values (a run that diverged?); "
                                  "cannot average")


def _first_difference(a: Any, b: Any) -> str:
    """`` (key: a vs b)`` for the first differing key of two dicts; '' otherwise."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f" ({key}: {_short(a.get(key))} vs {_short(b.get(key))})"
    return ""


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

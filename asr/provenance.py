"""Where a measured result came from: the checkpoint (preset, parameters, exported or averaged
weights), the training data, the commit, the hardware and the date (``asr evaluate --results-json``).

Each ``describe_*`` function returns the text one field of :class:`asr.results.MeasuredResult`
holds, so that a results table says what was measured, on what, with which code.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import date
from pathlib import Path

from asr.results import MeasuredResult


def result_from_evaluation(
    evaluation, checkpoint: str | Path, manifest: str | Path, test_set: str | None = None,
    train_data: str | None = None, model: str | None = None, decoding: str = "greedy",
    hardware: str | None = None, device: str = "cpu",
) -> MeasuredResult:
    """A ``MeasuredResult`` from an ``asr.evaluate.EvalResult`` and the checkpoint it scored.

    What is not given is read from the checkpoint (preset, parameter count, weights exported in
    half precision or averaged, training manifest and, from the ``<name>.summary.json`` that
    ``asr prepare`` writes beside it, its hours), the manifest's name, the device
    (``describe_hardware``) and git.
    """
    from asr.checkpoint import load_checkpoint

    payload = load_checkpoint(checkpoint)
    config = payload.get("config") or {}
    if model is None:
        params = sum(t.numel() for t in payload["model_state"].values() if hasattr(t, "numel"))
        model = f"{config.get('preset', 'custom')}, {params / 1e6:.1f} M parameters" + _weights_note(payload)
    if train_data is None:
        train_data = describe_manifest((config.get("data") or {}).get("train_manifest", "")) or "unknown"
    words = evaluation.report.words
    return MeasuredResult(
        test_set=test_set or Path(manifest).stem, wer=round(100 * evaluation.report.wer, 2),
        cer=round(100 * evaluation.report.cer, 2), num_utterances=len(evaluation.utts),
        num_words=words.ref_units, train_data=train_data, model=model, decoding=decoding,
        hardware=hardware or describe_hardware(device), commit=git_commit(), date=today(),
        checkpoint=str(checkpoint), manifest=str(manifest),
    )


def _weights_note(payload: dict) -> str:
    """``, fp16 weights, average of 3 checkpoints``: what ``asr export`` and ``asr average`` made of
    a checkpoint's weights, as its ``metrics`` record it (a result of such a checkpoint is not one
    of the trained float32 weights)."""
    metrics = payload.get("metrics") or {}
    notes = []
    if metrics.get("dtype") in ("fp16", "bf16"):
        notes.append(f"{metrics['dtype']} weights")
    if isinstance(metrics.get("averaged_from"), list) and len(metrics["averaged_from"]) > 1:
        notes.append(f"average of {len(metrics['averaged_from'])} checkpoints")
    return "".join(f", {note}" for note in notes)


def describe_manifest(manifest: str | Path) -> str:
    """``train-clean-100 (100.59 h)`` when ``asr prepare``'s summary lies beside the manifest,
    else the manifest's path (``""`` for none)."""
    if not manifest:
        return ""
    manifest = Path(manifest)
    summary = manifest.with_name(manifest.stem + ".summary.json")
    try:
        hours = json.loads(summary.read_text(encoding="utf-8"))["duration_s"] / 3600
        return f"{manifest.stem} ({hours:.2f} h)"
    except (OSError, ValueError, KeyError, TypeError):
        return str(manifest)


def git_commit(repo: str | Path | None = None) -> str:
    """The short commit hash of ``repo`` (default: the folder holding this package), with
    ``-dirty`` when the work tree has changes; ``""`` outside a git checkout."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def describe_hardware(device: str = "cpu") -> str:
    """``1x NVIDIA H100 80GB HBM3`` for CUDA devices, ``2-core CPU (x86_64)`` otherwise."""
    if str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores}-core CPU ({platform.machine()})"


def today() -> str:
    return date.today().isoformat()

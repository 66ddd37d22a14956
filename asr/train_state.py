"""What a training run starts from, and the checks that the config still fits it.

With ``init_from=<checkpoint>`` a new run fine-tunes a trained model: it starts from that
checkpoint's weights, CMVN statistics and tokenizer, with a fresh optimizer and schedule. The
config must describe the same features and model (``dropout`` and ``dither`` may differ).

With ``--resume`` a run goes on from its ``last.pt``, whose training state holds where the run is
(:class:`Progress`) and its optimizer, schedule, gradient scaler and EMA. It needs no random state:
every random draw of training is seeded from the run's seed and where the run is (the step, or the
epoch and utterance), so a resumed run draws what the uninterrupted one draws.

A run stopped inside an epoch goes on with that epoch's batches, which only the training data and
batching it was saved with make: ``last.pt`` records how many utterances and batches there were and
a digest of the training set (:func:`training_set_digest`), and a resume inside the epoch refuses a
config that makes other batches (:func:`check_epoch_position`). Between epochs the data may change.
The optimizer goes on with its saved settings, so a config that asks for others (``optim.lr``...)
is refused (:func:`optimizer_differences`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from asr.averaging import ModelEMA
from asr.checkpoint import CheckpointError, load_checkpoint
from asr.config import config_to_dict
from asr.features import FeatureExtractor
from asr.manifest import Utterance
from asr.model import DeepSpeech2
from asr.recognizer import state_mismatch
from asr.run_state import snapshot
from asr.train_config import TrainConfig, TrainError

logger = logging.getLogger(__name__)

Scheduler = torch.optim.lr_scheduler.LRScheduler


# settings that change training only: a fine-tuning run may choose its own
_TRAINING_ONLY = {"features": {"dither"}, "model": {"dropout"}}


def init_checkpoint(cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint ``cfg.init_from`` names, once checked to fit ``cfg``'s features, model and tokenizer."""
    path = cfg.init_from
    try:
        payload = load_checkpoint(path)
    except CheckpointError as e:
        raise TrainError(f"init_from: {e}") from None
    differ = config_differences(payload, cfg)
    if differ:
        raise TrainError(f"{path}: init_from needs the checkpoint's features, model and tokenizer; it has "
                         + "; ".join(differ))
    logger.info("init_from=%s (weights, CMVN and tokenizer; new optimizer and schedule)", path)
    return payload


def tokenizer_difference(payload: dict[str, Any], cfg: TrainConfig) -> str | None:
    """How a checkpoint's tokenizer differs from the one ``cfg`` asks for (characters against
    SentencePiece units), or None. The run goes on with the checkpoint's, so a difference would
    leave a ``config.yaml`` that does not describe the model."""
    kind = payload["tokenizer"]["type"]
    if (kind == "char") != (cfg.tokenizer.kind == "char"):
        return f"tokenizer {kind!r} (config: tokenizer.kind={cfg.tokenizer.kind!r})"
    return None


def config_differences(payload: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The feature and model settings of a checkpoint that differ from ``cfg``'s (training-only ones
    aside), as ``model.rnn_hidden=64 (config: 96)``, then its tokenizer's (:func:`tokenizer_difference`)."""
    theirs = {"features": payload["features_config"], "model": payload["model_config"]}
    ours = {"features": config_to_dict(cfg.features), "model": config_to_dict(cfg.model)}
    differ = [f"{part}.{key}={theirs[part].get(key)!r} (config: {value!r})"
              for part, values in ours.items() for key, value in values.items()
              if key not in _TRAINING_ONLY[part] and theirs[part].get(key) != value]
    tokenizer = tokenizer_difference(payload, cfg)
    return differ + [tokenizer] if tokenizer else differ


def resume_checkpoint(path: Path) -> dict[str, Any]:
    """``last.pt`` of a run to resume (``path``), once checked to hold a training state.

    Raises:
        TrainError: it is an inference checkpoint. CheckpointError: it is unreadable or damaged.
    """
    payload = load_checkpoint(path)
    if "train_state" not in payload:
        raise TrainError(f"{path}: holds no training state (an inference checkpoint); cannot resume from it")
    return payload


def load_start_weights(start: dict[str, Any], source: str | Path, resumed: bool, cfg: TrainConfig,
                       features: FeatureExtractor, model: DeepSpeech2) -> None:
    """Load the features' and model's weights of ``start``, the checkpoint the run starts from
    (``source``: ``last.pt`` when ``resumed``, else ``init_from``).

    Raises:
        TrainError: the config changed the tokenizer or the shape of the model or features.
    """
    mismatch = (tokenizer_difference(start, cfg) or state_mismatch(features, start["features_state"])
                or state_mismatch(model, start["model_state"]))
    if mismatch:
        what = "; ".join(config_differences(start, cfg)) or f"weights: {mismatch}"
        raise TrainError(f"{source}: does not match the config ({what}); "
                         + ("resume with the run's own config" if resumed else "init_from needs the same model"))
    features.load_state_dict(start["features_state"])
    model.load_state_dict(start["model_state"])


@dataclass
class Progress:
    """Where a run is: counted by the trainer, saved in ``last.pt``, restored by ``--resume``."""

    step: int = 0  # training steps (batches with readable audio) since the run began
    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches of the current epoch consumed, unreadable ones too
    best_dev_wer: float | None = None  # the lowest dev WER so far; None before the dev set is scored
    skipped_batches: int = 0  # batches without an update: unreadable audio, non-finite losses or gradient
    zeroed_utterances: int = 0  # utterances whose non-finite CTC loss was set to zero

    def limit_reached(self, max_steps: int, epochs: int) -> str | None:
        """The limit a resumed run has reached already (``"max_steps=3"``, ``"epochs=2"``), or None.

        >>> Progress(step=3, epoch=1).limit_reached(max_steps=3, epochs=2)
        'max_steps=3'
        """
        if max_steps and self.step >= max_steps:
            return f"max_steps={max_steps}"
        if self.epoch >= epochs:
            return f"epochs={epochs}"
        return None


@dataclass(frozen=True)
class EpochData:
    """What makes an epoch's batches, besides the seed: the training set and its batching."""

    manifest: str  # data.train_manifest, named in errors
    num_utterances: int  # utterances of the training set
    batches: int  # batches per epoch (of this rank)
    digest: str  # training_set_digest of the utterances


def training_set_digest(utts: Sequence[Utterance]) -> str:
    """A BLAKE2b digest (32 hex digits) of the training utterances in manifest order: each one's file
    name, offset and duration, the things the batches are made from. Not the folders, so that data
    moved as a whole still resumes, and not the text: a corrected transcript makes the same batches.

    >>> a, b = Utterance("/data/a.flac", 2.0, "hi"), Utterance("/data/b.flac", 3.0, "ho")
    >>> training_set_digest([a, b]) == training_set_digest([Utterance("/moved/a.flac", 2.0, "HI"), b])
    True
    >>> training_set_digest([a, b]) == training_set_digest([b, a])
    False
    """
    digest = hashlib.blake2b(digest_size=16)
    for utt in utts:
        name = os.path.basename(utt.audio_filepath).encode("utf-8", "surrogateescape")
        digest.update(struct.pack("<Idd", len(name), utt.offset, utt.duration) + name)
    return digest.hexdigest()


def capture_train_state(progress: Progress, data: EpochData, optimizer: torch.optim.Optimizer, scheduler: Scheduler,
                        scaler: torch.amp.GradScaler, ema: ModelEMA | None) -> dict[str, Any]:
    """The ``train_state`` of a checkpoint, copied off the live tensors (a background thread may
    write it while training goes on)."""
    return snapshot({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        **asdict(progress),
        "num_utterances": data.num_utterances, "batches": data.batches, "training_set": data.digest,
        "ema": ema.state_dict() if ema is not None else None,
    })


def restore_train_state(state: dict[str, Any], path: Path, data: EpochData, optimizer: torch.optim.Optimizer,
                        scheduler: Scheduler, scaler: torch.amp.GradScaler, ema: ModelEMA | None,
                        optim_name: str) -> Progress:
    """Load ``state`` (the ``train_state`` of ``path``) into the optimizer, schedule, scaler and EMA;
    returns the run's progress (no random state: see the module's docstring).

    Raises:
        TrainError: it holds another optimizer's state than ``optim_name``'s or other settings of it
            (:func:`optimizer_differences`), or was saved inside an epoch whose batches the config no
            longer makes (:func:`check_epoch_position`).
    """
    ours = [sorted(group) for group in optimizer.state_dict()["param_groups"]]
    if [sorted(group) for group in state["optimizer"].get("param_groups", [])] != ours:
        raise TrainError(f"{path}: holds the state of another optimizer than optim.name={optim_name!r}; "
                         "resume with the run's own config")
    differ = optimizer_differences(state["optimizer"], optimizer)
    if differ:
        raise TrainError(f"{path}: the run was trained with {'; '.join(differ)}; resume with the run's own config "
                         f"(init_from={path} starts a new run with a new optimizer)")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    check_epoch_position(state, path, data)
    progress = Progress(step=state["step"], epoch=state["epoch"], batches_done=state["batches_done"],
                        best_dev_wer=state["best_dev_wer"], skipped_batches=state["skipped_batches"],
                        zeroed_utterances=state["zeroed_utterances"])
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    elif ema is not None:
        logger.warning("ema_decay is set but the checkpoint holds no EMA; averaging starts from its weights")
    logger.info("resumed step=%d epoch=%d batch=%d", progress.step, progress.epoch, progress.batches_done)
    return progress


# the optimizer's settings that a config gives it, by their name in an optimizer's param groups
_OPTIM_SETTINGS = {"initial_lr": "optim.lr", "weight_decay": "optim.weight_decay", "betas": "optim.betas",
                   "momentum": "optim.momentum"}


def optimizer_differences(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> list[str]:
    """The settings of a saved optimizer state that differ from ``optimizer``'s (built from the
    config), as ``optim.lr=0.003 (config: 0.01)``. Loading the state puts the saved ones back, so a
    resume with others would go on with the saved ones under a ``config.yaml`` that says otherwise.

    >>> opt = torch.optim.AdamW([torch.zeros(1)], lr=0.01)
    >>> _ = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # the schedule keeps lr as initial_lr
    >>> optimizer_differences({"param_groups": [{**opt.param_groups[0], "initial_lr": 0.003}]}, opt)
    ['optim.lr=0.003 (config: 0.01)']
    """
    differ: dict[str, str] = {}
    for theirs, ours in zip(saved.get("param_groups", []), optimizer.state_dict()["param_groups"]):
        for key, name in _OPTIM_SETTINGS.items():
            if key in ours and key in theirs and _plain(theirs[key]) != _plain(ours[key]):
                differ.setdefault(name, f"{name}={_plain(theirs[key])} (config: {_plain(ours[key])})")
    return list(differ.values())


def _plain(value: Any) -> Any:
    """A setting as the config writes it: a tuple (``betas``) as a list."""
    return list(value) if isinstance(value, (tuple, list)) else value


def check_epoch_position(state: dict[str, Any], path: Path, data: EpochData) -> None:
    """A run stopped inside an epoch goes on with that epoch's batches: only the training data and
    batching it was saved with make them. Checkpoints saved before ``num_utterances`` or the
    training set's digest were are checked by what they hold. Between epochs the data may change.

    Raises:
        TrainError: ``state`` was saved inside an epoch and ``data`` makes other batches.
    """
    done = state["batches_done"]
    if not done:
        return
    saved = (state.get("num_utterances", data.num_utterances), state.get("batches", data.batches))
    where = f"{path}: saved at batch {done} of {saved[1]} of epoch {state['epoch'] + 1}"
    if saved != (data.num_utterances, data.batches) or done > data.batches:
        raise TrainError(
            f"{where}, over {saved[0]} training utterances; the config now makes {data.batches} batches of "
            f"{data.num_utterances} (data.train_manifest, data.max_batch_s or data.max_batch_size changed); "
            "resume with the run's own config")
    if state.get("training_set", data.digest) != data.digest:
        raise TrainError(
            f"{where}, over other training utterances than {data.manifest} lists now (as many, but other files, "
            "durations or order); resume with the manifest the run was saved with, or start a new run with "
            f"init_from={path}")

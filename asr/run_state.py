"""What a training run keeps on disk and restores: the files of its folder (``config.yaml``,
``train_log.jsonl``), the checkpoints it starts from (``last.pt`` for ``--resume``, ``init_from``)
and the random state.

A new run refuses a folder whose ``config.yaml`` or ``train_log.jsonl`` it did not write
(:func:`check_run_dir`); a resumed run drops the log events after its checkpoint
(:func:`trim_log`); checkpoint state is copied off the live tensors (:func:`snapshot`) and written
by one background thread (:class:`BackgroundWriter`) while training goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from asr.checkpoint import CheckpointError, load_checkpoint
from asr.config import config_to_dict, save_yaml
from asr.outputs import atomic_output, check_output, check_output_folder, json_lines_with, starts_with
from asr.train_config import TrainConfig, TrainError

logger = logging.getLogger(__name__)


def snapshot(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (dicts, lists and tuples rebuilt), so that a
    background write never sees later updates of the live tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


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


RUN_CONFIG_HEADER = "# written by asr train: the resolved configuration of this run (preset, defaults, overrides)\n"


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A resumed run needs ``last.pt``. A new run needs a folder without a checkpoint (``last.pt``,
    ``model.pt``, ``best.pt``, ``epoch-<N>.pt``, the names it writes), and writes
    ``config.yaml`` and ``train_log.jsonl``: it refuses a folder where they would replace anything
    but the files of an earlier run that saved no checkpoint (a failed sweep point, a run stopped
    in its first epoch), such as the user's own config.

    Raises:
        TrainError: nothing to resume, or a run with a checkpoint is there already.
        OutputError: ``run_dir`` is not a folder, or one of the two is not a file ``asr train`` wrote.
    """
    last = run_dir / "last.pt"
    # every checkpoint a new run writes; best.pt or epoch-<N>.pt without last.pt: a run whose
    # last.pt was deleted, or files of the user's own, which a new run would silently replace
    written = [run_dir / name for name in ("model.pt", "best.pt")] + sorted(run_dir.glob("epoch-*.pt"))
    if resume:
        if not last.is_file():
            kept = [p.name for p in written if p.exists()]
            raise TrainError(f"{last}: nothing to resume (no checkpoint)"
                             + (f"; {', '.join(kept)} hold no training state" if kept else ""))
        return
    if last.exists():
        raise TrainError(f"{run_dir}: a run already exists there; pass --resume or choose another name/out_dir")
    for path in written:
        if path.exists():
            raise TrainError(f"{path}: exists and a new run would replace it (no last.pt to resume from); "
                             "choose another name/out_dir")
    check_output_folder(run_dir, "; no run written there (choose another out_dir)")  # before the data is read
    check_output(run_dir / "config.yaml", lambda p: starts_with(p, RUN_CONFIG_HEADER.encode()),
                 "the configuration asr train wrote for a run")
    check_output(run_dir / "train_log.jsonl", lambda p: json_lines_with(p, {"event"}), "the log of an asr train run")


def trim_log(path: Path, step: int) -> None:
    """Keep the log events up to ``step``: none for a new run; for a resumed one, none of the steps
    logged after its checkpoint (they are trained again, and would otherwise appear twice)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line cut short by a crash
            pass
    with atomic_output(path) as tmp:
        tmp.write_text("".join(kept), encoding="utf-8")


def write_event(log, event: dict, on_event: Callable[[dict], None]) -> None:
    """Append ``event`` to the run's log as a JSON line (flushed at once), then pass it to ``on_event``."""
    log.write(json.dumps(event) + "\n")
    log.flush()
    if event["event"] == "step":
        logger.debug(" ".join(f"{k}={v}" for k, v in event.items()))
    on_event(event)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def caller_state_kept() -> Iterator[None]:
    """Give back torch's CPU thread count and the python, torch and CUDA random states on leaving,
    also on an error: a training run sets and seeds them, the caller's program goes on with its own.

    CUDA's generators are read only when CUDA is initialized already (reading them would initialize
    it before the run picks its device); if the run initializes it, they are seeded on leaving as
    the caller would have found them, from torch's initial seed.
    """
    threads = torch.get_num_threads()
    cuda_before = torch.cuda.is_available() and torch.cuda.is_initialized()
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if cuda_before:
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        set_rng_state(state)
        if not cuda_before and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.manual_seed_all(torch.initial_seed())  # a generator never drawn from: its seed only


def write_run_config(cfg: TrainConfig, run_dir: Path) -> None:
    """``run_dir/config.yaml``: the resolved config, under the header that marks it as the run's own."""
    with atomic_output(run_dir / "config.yaml") as tmp:
        save_yaml(config_to_dict(cfg), tmp, header=RUN_CONFIG_HEADER)


class BackgroundWriter:
    """Runs file writes (checkpoints, deletions) on one background thread, in the order given.

    At most ``max_pending`` writes wait at a time: ``submit`` blocks on the oldest beyond that, so
    at most an epoch end's checkpoints are held in memory besides the live ones.

    Example:
        >>> writer, done = BackgroundWriter(), []
        >>> writer.submit(lambda: done.append(1)); writer.submit(lambda: done.append(2)); writer.wait()
        >>> done
        [1, 2]
    """

    def __init__(self, max_pending: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: list[Future] = []
        self.max_pending = max_pending

    def submit(self, task: Callable[[], None]) -> None:
        """Queue ``task``; re-raises the error of an earlier write it had to wait for."""
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._executor.submit(task))

    def wait(self) -> None:
        """Block until every write submitted so far is done; re-raises a failed write's error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()


class LogWindow:
    """Mean loss and throughput between two log events (non-finite losses left out)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.audio_s = 0.0
        self.start = time.monotonic()

    def add(self, loss: float, audio_s: float) -> None:
        if math.isfinite(loss):
            self.losses.append(loss)
        self.audio_s += audio_s

    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses) if self.losses else float("nan")

    def audio_h_per_s(self) -> float:
        return self.audio_s / 3600 / max(1e-9, time.monotonic() - self.start)


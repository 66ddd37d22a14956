"""What a training run keeps on disk: the files of its folder and the writing of its checkpoints;
seeding, and giving the caller its own state back. (What ``last.pt``'s training state holds, and
how a run starts from a checkpoint: ``asr.train_state``.) One run lives in ``exp/<name>/`` (or
``out_dir``):

- ``config.yaml``: the resolved configuration (preset merged, overrides applied);
- ``train_log.jsonl``: one JSON object per logged step and per epoch;
- ``last.pt``: the newest checkpoint with the full training state (for ``--resume``);
- ``best.pt``: the checkpoint with the lowest dev WER (or the newest, without a dev set);
- ``model.pt``: the final inference checkpoint (a copy of the best weights, no optimizer state);
- ``epoch-<N>.pt``: with ``keep_epoch_checkpoints``, the weights after epoch N, for ``asr average``.

A new run refuses a folder whose ``config.yaml`` or ``train_log.jsonl`` it did not write
(:func:`check_run_dir`); a resumed run drops the log events after its checkpoint
(:func:`trim_log`); checkpoints are copied off the live tensors at once and written by one
background thread (:class:`RunCheckpoints`) while training goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from asr.checkpoint import checkpoint_payload, save_checkpoint
from asr.config import config_to_dict, save_yaml
from asr.outputs import atomic_output, check_output, check_output_folder, json_lines_with, starts_with
from asr.recognizer import Recognizer
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


class RunCheckpoints:
    """The checkpoints of a run folder, each copied when saved and written by a background thread
    (:class:`BackgroundWriter`) in the order saved, atomically.

    Args:
        run_dir: the run's folder.
        config: the run's resolved config, stored in every checkpoint.
        keep_epochs: how many ``epoch-<N>.pt`` are kept, the newest (0: none are written).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], keep_epochs: int) -> None:
        self.run_dir, self.config, self.keep_epochs = run_dir, config, keep_epochs
        self._writer = BackgroundWriter()

    def save(self, name: str, recognizer: Recognizer, metrics: dict[str, Any],
             train_state: dict[str, Any] | None = None) -> None:
        """Queue ``run_dir/name`` with ``recognizer``'s weights (copied now), ``metrics`` and, for
        ``--resume``, ``train_state`` (a copy already, see :func:`snapshot`)."""
        extra = {"metrics": metrics} if train_state is None else {"metrics": metrics, "train_state": train_state}
        payload = checkpoint_payload(recognizer, self.config, **extra)  # weights copied
        path = self.run_dir / name
        self._writer.submit(lambda: save_checkpoint(payload, path))

    def save_epoch(self, epoch: int, recognizer: Recognizer, metrics: dict[str, Any]) -> None:
        """``epoch-<epoch>.pt``, the one ``keep_epochs`` before it removed; nothing if none are kept."""
        if self.keep_epochs:
            self.save(f"epoch-{epoch}.pt", recognizer, metrics)
            old = self.run_dir / f"epoch-{epoch - self.keep_epochs}.pt"
            self._writer.submit(lambda: old.unlink(missing_ok=True))

    def write_final_model(self, recognizer: Recognizer, metrics: dict[str, Any], from_best: bool) -> None:
        """``model.pt``: a copy of ``best.pt`` when ``from_best`` (a dev set picked it) and it is
        there, else ``recognizer``'s weights."""
        best = self.run_dir / "best.pt"
        self.wait()
        if from_best and best.is_file():
            with atomic_output(self.run_dir / "model.pt", durable=True) as tmp:
                shutil.copyfile(best, tmp)
        else:
            self.save("model.pt", recognizer, metrics)

    def wait(self) -> None:
        """Block until every checkpoint saved so far is on disk; re-raises a failed write's error."""
        self._writer.wait()


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

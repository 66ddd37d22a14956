"""CTC training of Deep Speech 2 models: ``asr train CONFIG.yaml [key=value ...]``.

One run lives in ``exp/<name>/`` (or ``out_dir``): ``config.yaml``, ``train_log.jsonl``, ``last.pt``
(for ``--resume``), ``best.pt``, ``model.pt`` and ``epoch-<N>.pt`` (see ``asr.run_state``). A new
run refuses a folder that holds a checkpoint (``--resume`` continues it) or a ``config.yaml`` /
``train_log.jsonl`` that ``asr train`` did not write, such as the user's own config.

With ``ema_decay`` > 0 the trainer keeps an exponential moving average of the weights
(``asr.averaging.ModelEMA``): the dev set scores it, and ``best.pt``, ``model.pt`` and the epoch
checkpoints hold it; ``last.pt`` holds the trained weights and the average, for an exact resume.

With ``init_from=<checkpoint>`` a new run fine-tunes a trained model (see ``asr.train_state``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.augment import SpecAugment, WaveAugment
from asr.averaging import ModelEMA
from asr.config import config_to_dict
from asr.ctc_loss import ctc_losses
from asr.data import Batch, DurationBatchSampler, ReadLog, SpeechDataset, collate, seed_of, warn_long_utterances
from asr.decode import DecodeError
from asr.distributed import (any_rank, any_rank_each, barrier, gather_lists, init_distributed, main_rank_logs,
                             shutdown)
from asr.evaluate import EvaluationStopped, evaluate_utterances
from asr.features import FeatureExtractor
from asr.interrupts import CtrlC, ignore_sigint
from asr.model import DeepSpeech2
from asr.optim import build_optimizer, build_scheduler
from asr.recognizer import Recognizer
from asr.run_data import (build_tokenizer, check_run_audio, check_transcripts, preload_audio, read_run_manifests,
                           set_global_cmvn)
from asr.run_state import (LogWindow, RunCheckpoints, caller_state_kept, check_run_dir, seed_everything, trim_log,
                           write_event, write_run_config)
from asr.train_state import (EpochData, Progress, capture_train_state, init_checkpoint, load_start_weights,
                             restore_train_state, resume_checkpoint, training_set_digest)
from asr.train_config import TrainConfig, TrainError
from asr.tokenizer import tokenizer_from_dict

logger = logging.getLogger(__name__)

_FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


def peak_memory(device: torch.device) -> dict[str, float]:
    """The peaks so far, in GiB, that an epoch or stop event carries: this process's resident memory
    (``rss_peak_gb``; data-loader workers are processes of their own) and, on CUDA, what PyTorch
    allocated on the device (``gpu_peak_gb``), the figure to size ``data.max_batch_s`` by."""
    per_gb = 2**30 if sys.platform == "darwin" else 2**20  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = {"rss_peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_gb, 3)}
    if device.type == "cuda":
        peak["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return peak


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    best_dev_wer: float | None
    stopped_early: bool
    skipped_batches: int
    zeroed_utterances: int


class Trainer:
    """Owns the objects of one run; ``run()`` trains until the epochs, step or time limit end."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, on_event: Callable[[dict], None] | None = None):
        self.cfg = cfg
        self.on_event = on_event or (lambda event: None)
        self.run_dir = cfg.run_dir
        try:
            self.dist = init_distributed(cfg.device)
        except RuntimeError as e:
            raise TrainError(str(e)) from None
        self.device = self.dist.device
        if not self.dist.is_main:
            self.on_event = lambda event: None  # progress is shown by rank 0 only
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        check_run_dir(self.run_dir, resume)
        last = self.run_dir / "last.pt"
        init = init_checkpoint(cfg) if cfg.init_from and not resume else None  # resuming reads last.pt only
        barrier(self.dist)  # every rank has checked before rank 0 creates the run (at the end of __init__)
        seed_everything(cfg.seed)

        with main_rank_logs(self.dist):  # every rank reads and checks the same data: rank 0 reports it
            self.train_utts, self.dev_utts = read_run_manifests(cfg)
            check_run_audio(cfg, self.train_utts, self.dev_utts)
            self.audio_cache = None
            if cfg.data.cache_audio:  # the dev audio too, on rank 0, which scores it
                self.audio_cache = preload_audio(self.train_utts + (self.dev_utts if self.dist.is_main else []),
                                                 cfg.features.sample_rate)
            state = resume_checkpoint(last) if resume else None
            start = state or init
            self.tokenizer = (tokenizer_from_dict(start["tokenizer"]) if start
                              else build_tokenizer(cfg, self.train_utts))
            check_transcripts(cfg, self.train_utts, self.tokenizer)
            warn_long_utterances(self.train_utts, cfg.data.max_batch_s, "data.max_batch_s")
            warn_long_utterances(self.dev_utts, cfg.data.eval_batch_s, "data.eval_batch_s")
            self.features = FeatureExtractor(cfg.features)
            self.model = DeepSpeech2(cfg.model, num_features=self.features.num_features,
                                     vocab_size=self.tokenizer.vocab_size)
            if start:
                load_start_weights(start, last if state else cfg.init_from, bool(state), cfg, self.features,
                                   self.model)
            elif cfg.features.normalize == "global":
                set_global_cmvn(self.features, cfg, self.train_utts, self.audio_cache)
        self.features.to(self.device)
        self.model.to(self.device)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.forward_model = self.model  # what train_step calls: the DDP wrapper when distributed
        if self.dist.enabled:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None)
        logger.info("model=%s params=%d device=%s", cfg.preset, self.model.num_params(), self.device)

        self.spec_augment = SpecAugment(cfg.augment)
        wave_augment = WaveAugment(cfg.augment, cfg.features.sample_rate) if cfg.augment.wave_augment else None
        self.dataset = SpeechDataset(self.train_utts, self.tokenizer, sample_rate=cfg.features.sample_rate,
                                     wave_transform=wave_augment, skip_unreadable=True, cache=self.audio_cache,
                                     seed=cfg.seed)
        self.read_log = ReadLog()  # each unreadable file and reading warning once a run, training and dev
        self.sampler = DurationBatchSampler(
            [u.duration for u in self.train_utts], max_batch_s=cfg.data.max_batch_s,
            max_batch_size=cfg.data.max_batch_size, shuffle=True, seed=cfg.seed, sortagrad=cfg.data.sortagrad,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )
        self.steps_per_epoch = len(self.sampler)
        total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_steps=total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.precision == "fp16")
        self.epoch_data = EpochData(str(cfg.data.train_manifest), len(self.train_utts), self.steps_per_epoch,
                                    training_set_digest(self.train_utts))
        self.progress = Progress()
        self.checkpoints = RunCheckpoints(self.run_dir, config_to_dict(cfg), cfg.keep_epoch_checkpoints)
        if state:
            self.progress = restore_train_state(state["train_state"], last, self.epoch_data, self.optimizer,
                                                self.scheduler, self.scaler, self.ema, cfg.optim.name)
        if self.dist.is_main:  # last: a resume the config does not fit leaves the run's own config
            self.run_dir.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves no folder
            write_run_config(cfg, self.run_dir)

    def recognizer(self) -> Recognizer:
        """The weights to score and ship: the EMA's when ``ema_decay`` is set, else the trained ones."""
        model = self.ema.module if self.ema is not None else self.model
        return Recognizer(features=self.features, model=model, tokenizer=self.tokenizer)

    # -------------------------------------------------------------------------------- training
    def run(self) -> TrainResult:
        """Train until the epochs, ``max_steps`` or ``max_minutes`` end. A resumed run that had already
        reached its epochs or ``max_steps`` trains nothing and leaves its files as they are (it writes
        ``model.pt`` only if that is missing); its result repeats the run's steps and epochs. One
        stopped in the dev scoring of an epoch's end does that end first (see :meth:`end_epoch`)."""
        cfg, progress = self.cfg, self.progress
        reached = progress.limit_reached(cfg.max_steps, cfg.epochs)
        if reached and progress.batches_done < self.steps_per_epoch:
            logger.warning("resume: the run already reached %s (step=%d epoch=%d); nothing to train",
                           reached, progress.step, progress.epoch)
            if self.dist.is_main and not (self.run_dir / "model.pt").is_file():  # stopped before writing it
                self.write_final_model()
                self.wait_for_checkpoints()
            barrier(self.dist)
            shutdown(self.dist)
            return self.result(stopped_early=progress.epoch < cfg.epochs)
        start = time.monotonic()
        start_step = progress.step
        log_path = self.run_dir / "train_log.jsonl"
        if self.dist.is_main:
            trim_log(log_path, progress.step)  # drop events after the checkpoint we start from
        with (log_path.open("a", encoding="utf-8") if self.dist.is_main else open(os.devnull, "w")) as log, \
                contextlib.ExitStack() as stack, \
                CtrlC(on_request=self._warn_of_stop) as ctrl_c:
            # Ctrl-C: the step is finished and saved; torchrun's launcher sends SIGINT to every rank
            stack.callback(self.wait_for_checkpoints)  # also when training fails
            while progress.epoch < cfg.epochs:
                self.sampler.set_epoch(progress.epoch)
                self.sampler.load_state_dict({"epoch": progress.epoch, "batches_done": progress.batches_done})
                self.dataset.set_epoch(progress.epoch)  # the waveform augmentation's draws: (seed, epoch, utterance)
                loader = torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=self.sampler, collate_fn=collate,
                    num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
                    # forked workers share the cached samples; other start methods would pickle them
                    multiprocessing_context=_FORK if self.audio_cache is not None and cfg.data.num_workers else None,
                    worker_init_fn=ignore_sigint if ctrl_c.active else None,
                )
                self.model.train()
                self.features.train()
                self.spec_augment.train()
                window = LogWindow()
                over_time = False  # also when no batch is left: an epoch resumed at its end
                unreadable = 0  # batches of this epoch with no readable file
                for batch in loader:
                    if self.report_reading(batch):  # every file of a rank's batch unreadable:
                        progress.batches_done += 1  # all ranks skip the step and its collectives
                        progress.skipped_batches += 1
                        unreadable += batch.size == 0
                        continue
                    loss, audio_s, grad_norm = self.train_step(batch)
                    progress.batches_done += 1
                    progress.step += 1
                    window.add(loss, audio_s)
                    if progress.step % cfg.log_every_steps == 0 or progress.batches_done == self.steps_per_epoch:
                        event = {
                            "event": "step", "step": progress.step, "epoch": progress.epoch,
                            "batch": progress.batches_done, "batches": self.steps_per_epoch,
                            "loss": window.mean_loss(), "lr": self.scheduler.get_last_lr()[0],
                            "grad_norm": grad_norm, "audio_h_per_s": window.audio_h_per_s(),
                            "elapsed_s": time.monotonic() - start, "run_steps": progress.step - start_step,
                            "skipped_batches": progress.skipped_batches,
                            "zeroed_utterances": progress.zeroed_utterances,
                        }
                        write_event(log, event, self.on_event)
                        window = LogWindow()
                    if cfg.checkpoint_every_steps and progress.step % cfg.checkpoint_every_steps == 0:
                        self.save("last.pt", with_train_state=True)
                    over_minutes = bool(cfg.max_minutes) and time.monotonic() - start >= 60 * cfg.max_minutes
                    requested, over_time = any_rank_each([ctrl_c.requested, over_minutes], self.dist)  # all ranks
                    if requested:  # stop at the same step
                        self.stop_on_request()
                    if over_time or progress.limit_reached(cfg.max_steps, cfg.epochs):
                        break
                if any_rank(unreadable == self.steps_per_epoch, self.dist):  # not a model to save as trained
                    raise TrainError(f"{cfg.data.train_manifest}: none of the training audio could be read "
                                     "(the files are named above); nothing was trained")
                if progress.batches_done >= self.steps_per_epoch:  # a Ctrl-C stops the dev scoring too
                    self.end_epoch(log, start, lambda: ctrl_c.requested)
                else:  # max_steps or max_minutes inside the epoch
                    self.stop_inside_epoch(log, start, lambda: ctrl_c.requested)
                if over_time or progress.limit_reached(cfg.max_steps, cfg.epochs):  # (epochs: the loop ends too)
                    break
        if self.dist.is_main:
            self.write_final_model()
            self.wait_for_checkpoints()
        barrier(self.dist)
        shutdown(self.dist)
        return self.result(stopped_early=progress.epoch < cfg.epochs)

    def result(self, stopped_early: bool) -> TrainResult:
        p = self.progress
        return TrainResult(run_dir=self.run_dir, steps=p.step, epochs_done=p.epoch, best_dev_wer=p.best_dev_wer,
                           stopped_early=stopped_early, skipped_batches=p.skipped_batches,
                           zeroed_utterances=p.zeroed_utterances)

    def train_step(self, batch) -> tuple[float, float, float]:
        """Forward, CTC loss, backward, clip, step. Returns (mean loss, audio seconds, grad norm).

        Dither, SpecAugment and dropout draw from torch's global generator, seeded here from (seed,
        rank, step): each rank draws its own numbers, and a resumed run the same as one that did
        not stop, with no generator state to save.
        """
        step_seed = seed_of(self.cfg.seed, self.dist.rank, self.progress.step)
        torch.default_generator.manual_seed(step_seed)  # not torch.manual_seed: 200 µs, this 3 µs here
        if self.device.type == "cuda":
            torch.cuda.manual_seed(step_seed)  # this rank's device
        batch = batch.to(self.device)
        with torch.no_grad():
            feats, feat_lens = self.features(batch.waves, batch.wave_lens)  # (B, T, F), (B,)
            feats = self.spec_augment(feats, feat_lens)  # (B, T, F)
        with torch.autocast(self.device.type, dtype=_amp_dtype(self.cfg.precision), enabled=self._autocast()):
            logits, out_lens = self.forward_model(feats, feat_lens)  # (B, T', V), (B,)
        losses, usable = ctc_losses(logits, out_lens, batch.tokens, batch.token_lens,
                                    blank=self.tokenizer.blank_id)  # (B,), (B,)
        num_bad = int((~usable).sum())
        audio_s = float(batch.wave_lens.sum()) / self.cfg.features.sample_rate
        self.optimizer.zero_grad(set_to_none=True)
        if num_bad:
            self.progress.zeroed_utterances += num_bad
            logger.warning("step=%d zeroed %d non-finite utterance losses", self.progress.step, num_bad)
        loss = losses.sum() / len(losses)
        self.scaler.scale(loss).backward()  # always, so data-parallel ranks stay in step
        if any_rank(num_bad == len(losses), self.dist):
            self.progress.skipped_batches += 1
            logger.warning("step=%d all %d losses non-finite; update skipped", self.progress.step, num_bad)
            self.scaler.update()
            self.scheduler.step()
            return float("nan"), audio_s, float("nan")
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        if math.isfinite(grad_norm):
            self.scaler.step(self.optimizer)
            if self.ema is not None:
                self.ema.update(self.model)
        else:
            self.progress.skipped_batches += 1
            logger.warning("step=%d non-finite gradient norm; update skipped", self.progress.step)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()) * len(losses) / max(1, len(losses) - num_bad), audio_s, grad_norm

    def report_reading(self, batch: Batch) -> bool:
        """Log the unreadable files and the reading's warnings of ``batch`` not seen before in the
        run; under torchrun, rank 0 logs those of every rank, each once. True on every rank when
        some rank's batch has no readable file (a collective: all ranks call it, once a batch)."""
        news = self.read_log.unseen(batch.unreadable + batch.notes)
        empty, any_news = any_rank_each([batch.size == 0, bool(news)], self.dist)
        if any_news and self.dist.enabled:
            everyone = gather_lists(news, self.dist)
            news = news + self.read_log.unseen(everyone) if self.dist.is_main else []
        self.read_log.log(news)
        return empty

    def score_dev(self, event: dict, should_stop: Callable[[], bool]) -> bool:
        """Score the dev set with the weights to ship, into ``event`` (WER, CER and the seconds it
        took, ``dev_s``); True when it is the best so far. Raises EvaluationStopped when
        ``should_stop()`` is true before one of its batches."""
        t0 = time.monotonic()
        try:
            result = evaluate_utterances(self.recognizer(), self.dev_utts, batch_s=self.cfg.data.eval_batch_s,
                                         cache=self.audio_cache, read_log=self.read_log, should_stop=should_stop)
        except DecodeError as e:  # none of the dev audio could be read (each file is named above)
            raise TrainError(str(e)) from None
        event.update(dev_wer=result.report.wer, dev_cer=result.report.cer, dev_s=time.monotonic() - t0)
        improved = self.progress.best_dev_wer is None or result.report.wer < self.progress.best_dev_wer
        if improved:
            self.progress.best_dev_wer = result.report.wer
        return improved

    def end_epoch(self, log, start: float, should_stop: Callable[[], bool]) -> None:
        """The dev set scored (rank 0, while the other ranks wait), ``last.pt``, ``best.pt`` when the
        scoring improved on it, the epoch's checkpoint and its log event. A Ctrl-C in the scoring
        (``should_stop``) stops it, and every rank, before the rest: ``last.pt`` then holds the
        epoch with all its batches done, and ``--resume`` begins with this end."""
        progress = self.progress
        event = {"event": "epoch", "epoch": progress.epoch, "step": progress.step,
                 "elapsed_s": time.monotonic() - start}
        improved = not self.dev_utts  # without a dev set, best.pt is the newest checkpoint
        last_epoch = progress.epoch + 1 >= self.cfg.epochs
        stopped = False
        if self.dev_utts and self.dist.is_main and ((progress.epoch + 1) % self.cfg.data.dev_every_epochs == 0
                                                    or last_epoch):
            try:
                improved = self.score_dev(event, should_stop)
            except EvaluationStopped:
                stopped = True
        if any_rank(stopped, self.dist):  # the other ranks wait here while rank 0 scores the dev set
            self.stop_on_request(" in the dev scoring of the epoch's end", "scores the dev set and goes on")
        progress.epoch += 1
        progress.batches_done = 0
        self.save("last.pt", with_train_state=True)
        if improved:
            self.save("best.pt")
        if self.dist.is_main:
            self.checkpoints.save_epoch(progress.epoch, self.recognizer(), self.metrics())
        event["best_dev_wer"] = progress.best_dev_wer
        write_event(log, event | peak_memory(self.device), self.on_event)

    def stop_inside_epoch(self, log, start: float, should_stop: Callable[[], bool]) -> None:
        """A stop by ``max_steps`` or ``max_minutes``: the dev set scores the last weights, so that
        ``model.pt`` is not an older epoch's when these are better. A Ctrl-C in the scoring stops it
        and every rank (``last.pt`` of the step; ``--resume`` does not score it)."""
        stopped = False
        if self.dev_utts and self.dist.is_main:
            event = {"event": "stop", "epoch": self.progress.epoch, "step": self.progress.step,
                     "elapsed_s": time.monotonic() - start}
            try:
                if self.score_dev(event, should_stop):
                    self.save("best.pt")
                event["best_dev_wer"] = self.progress.best_dev_wer
                write_event(log, event | peak_memory(self.device), self.on_event)
            except EvaluationStopped:
                stopped = True
        if any_rank(stopped, self.dist):  # the other ranks wait here while rank 0 scores the dev set
            self.stop_on_request(" in the dev scoring of the stop, which is not done")
        self.save("last.pt", with_train_state=True)

    def stop_on_request(self, where: str = "", resume: str = "goes on from there") -> None:
        """Ctrl-C: ``last.pt`` of this step (rank 0 writes it), then KeyboardInterrupt on every rank
        (the CLI's ``asr: interrupted``, status 130). ``--resume`` goes on from this step as if the
        run had not stopped (``where`` and ``resume``, in its message: where a stop not after a step
        is, and what ``--resume`` does there). The other ranks wait until rank 0 has written it:
        torchrun ends the ranks still running (SIGTERM) once one has ended, and rank 0 was killed in
        its save now and then. For the same reason each rank then ignores SIGTERM: the stop is done, and rank 0's
        last line (``asr: interrupted``) must still come out (torchrun kills after 30 s anyway)."""
        self.save("last.pt", with_train_state=True)
        self.wait_for_checkpoints()
        if self.dist.is_main:
            p = self.progress
            logger.warning("stopped at step=%d (epoch %d, batch %d of %d)%s; %s holds it: the same command with "
                           "--resume %s", p.step, p.epoch + 1, p.batches_done, self.steps_per_epoch, where,
                           self.run_dir / "last.pt", resume)
        barrier(self.dist)
        if self.dist.enabled and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    def _warn_of_stop(self) -> None:
        """The first Ctrl-C's message (rank 0's, under torchrun: its launcher signals every rank once)."""
        if not self.dist.enabled:
            logger.warning("interrupted: stopping after this step (or this batch of the dev scoring) to save last.pt "
                           "(Ctrl-C again stops at once, losing the steps since the last checkpoint)")
        elif self.dist.is_main:
            logger.warning("interrupted: every rank stops after this step (or this batch of the dev scoring), and "
                           "rank 0 saves last.pt")

    # ----------------------------------------------------------------------------- checkpoints

    def save(self, name: str, with_train_state: bool = False) -> None:
        """Write ``run_dir/name`` atomically (rank 0 only; the ranks hold identical weights).

        A checkpoint with training state holds the trained weights (and the EMA in its training
        state); one without holds ``recognizer()``'s weights. The state is copied now and written
        by a background thread, in the order saved, while training goes on.
        """
        if not self.dist.is_main:
            return
        if with_train_state:
            state = capture_train_state(self.progress, self.epoch_data, self.optimizer, self.scheduler, self.scaler,
                                        self.ema)
            trained = Recognizer(features=self.features, model=self.model, tokenizer=self.tokenizer)
            self.checkpoints.save(name, trained, self.metrics(), state)
        else:
            self.checkpoints.save(name, self.recognizer(), self.metrics())

    def metrics(self) -> dict[str, Any]:
        """The ``metrics`` of a checkpoint saved now."""
        p = self.progress
        return {"step": p.step, "epoch": p.epoch, "best_dev_wer": p.best_dev_wer}

    def wait_for_checkpoints(self) -> None:
        """Block until every checkpoint saved so far is on disk; re-raises a failed write's error."""
        self.checkpoints.wait()

    def write_final_model(self) -> None:
        """model.pt: the best checkpoint's weights when a dev set picked one, else the current ones."""
        self.checkpoints.write_final_model(self.recognizer(), self.metrics(), from_best=bool(self.dev_utts))

    def _autocast(self) -> bool:
        return self.device.type == "cuda" and self.cfg.precision != "fp32"


def train(cfg: TrainConfig, resume: bool = False, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``cfg`` (see ``Trainer``); ``resume`` continues from ``<run_dir>/last.pt``.

    The caller's global state is given back on return and on error: the run sets torch's CPU
    thread count (``threads``) and seeds python's ``random`` and torch's generators (``seed``); the
    thread count and the python, torch and CUDA random states are restored as they were. (A
    ``Trainer`` used directly leaves them as the run set them.)

    Raises:
        TrainError: the run cannot start or go on (see ``Trainer``); ConfigError, CheckpointError,
            OutputError and others from the modules it uses.
    """
    with caller_state_kept():
        return Trainer(cfg, resume=resume, on_event=on_event).run()


def _amp_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)

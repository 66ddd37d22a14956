"""``asr train``, ``sweep``, ``average``, ``export``, ``compare`` and ``presets``: the commands that
make, combine and report on models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from asr.train import train
    from asr.train_config import resolve_config

    cfg = resolve_config(args.config, args.overrides)
    progress = _Progress(cfg.epochs, cfg.max_steps)
    result = train(cfg, resume=args.resume, on_event=progress)
    progress.close()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    print(f"steps {result.steps}  epochs {result.epochs_done}  best dev WER "
          f"{'n/a' if result.best_dev_wer is None else f'{100 * result.best_dev_wer:.2f} %'}")
    if result.skipped_batches or result.zeroed_utterances:
        print(f"non-finite losses: {result.zeroed_utterances} utterances zeroed, {result.skipped_batches} batches skipped")
    print(f"model: {result.run_dir / 'model.pt'}")
    return 0


class _Progress:
    """A one-line progress bar on stderr: epoch, batch, loss, audio hours per second, ETA."""

    def __init__(self, epochs: int, max_steps: int = 0):
        self.epochs = epochs
        self.max_steps = max_steps
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        if event["event"] in ("epoch", "stop"):
            extra = f"  dev WER {100 * event['dev_wer']:.2f} %" if "dev_wer" in event else ""
            what = "done" if event["event"] == "epoch" else "stopped inside the epoch at"
            self._line(f"epoch {event['epoch'] + 1}/{self.epochs} {what}  step {event['step']}{extra}", final=True)
            return
        total = self.epochs * event["batches"]
        if self.max_steps:
            total = min(total, self.max_steps)
        done = event["epoch"] * event["batches"] + event["batch"]
        rate = event["run_steps"] / event["elapsed_s"]  # steps per second in this run
        eta = (total - done) / rate if rate > 0 else float("nan")
        width = 20
        filled = int(width * event["batch"] / event["batches"])
        bar = "#" * filled + "-" * (width - filled)
        self._line(
            f"epoch {event['epoch'] + 1}/{self.epochs} [{bar}] {event['batch']}/{event['batches']} "
            f"loss {event['loss']:.3f} lr {event['lr']:.2e} {event['audio_h_per_s']:.3f} audio-h/s ETA {_fmt_s(eta)}",
            final=not self.tty,
        )

    def _line(self, text: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def cmd_sweep(args: argparse.Namespace) -> int:
    from asr.config import ConfigError
    from asr.sweep import first_repeated, parse_grid_specs, sweep

    grid = parse_grid_specs(args.grid)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError("--seeds: no seed given")
    if not all(0 <= s < 2**32 for s in seeds):  # the range TrainConfig.seed takes
        raise ConfigError(f"--seeds {args.seeds}: each seed must be in [0, {2**32 - 1}]")
    twice = first_repeated(seeds)
    if twice is not None:
        raise ConfigError(f"--seeds {args.seeds}: seed {twice} given twice")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1")

    def report(run) -> None:
        wer = "n/a" if run.best_dev_wer is None else f"{100 * run.best_dev_wer:.2f} %"
        state = f"failed ({run.error})" if run.error else ("already trained" if run.reused else f"{run.wall_s:.0f} s")
        print(f"{run.run_dir.name}: best dev WER {wer}, {state}", flush=True)

    runs = sweep(args.config, grid, seeds, args.out, overrides=args.overrides, jobs=args.jobs, on_run=report)
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    failed = sum(r.error is not None for r in runs)
    if failed:
        print(f"asr: {failed} of {len(runs)} runs failed (their errors are above and in <run>/train.out)", file=sys.stderr)
    return 1 if failed else 0


def cmd_average(args: argparse.Namespace) -> int:
    from asr.averaging import write_average
    from asr.paths import file_identity

    out = write_average(args.checkpoints, args.out)
    seen: set[tuple[int, int]] = set()
    for path in args.checkpoints:  # a shell glob and a name typed again: the file weighs double
        file_id = file_identity(path)
        if file_id in seen:
            print(f"asr: warning: {path}: given more than once; each time counts in the average", file=sys.stderr)
        seen.add(file_id)
    count = len(args.checkpoints)
    print(f"{out}: average of {count} checkpoints" if count > 1
          else f"{out}: the weights of {args.checkpoints[0]} (one checkpoint: nothing averaged), training state dropped")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from asr.checkpoint import write_export

    out = write_export(args.checkpoint, args.out, args.dtype)
    size_mb = [Path(p).stat().st_size / 1e6 for p in (args.checkpoint, out)]
    print(f"{out}: {args.dtype} weights, {size_mb[1]:.1f} MB ({args.checkpoint}: {size_mb[0]:.1f} MB)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from asr.results import comparison_table, paper_row_hint, read_results

    skipped: list[str] = []
    results = read_results(args.results, skipped)
    print(comparison_table(results))
    for test_set in dict.fromkeys(r.test_set for r in results):  # listed below the paper's rows, as other test sets
        hint = paper_row_hint(test_set)
        if hint:
            print(f"asr: note: test set {test_set!r} is listed under 'other'; asr evaluate --test-set {hint} "
                  "puts such a result on the paper's row", file=sys.stderr)
    return 1 if skipped else 0  # a batch that passed something over (named above), as transcribe and evaluate


def cmd_presets(args: argparse.Namespace) -> int:
    import torch

    from asr.config import ConfigError
    from asr.model import DeepSpeech2, list_presets, load_preset

    if args.features < 1:
        raise ConfigError(f"--features {args.features}: must be >= 1")
    if args.vocab < 2:
        raise ConfigError(f"--vocab {args.vocab}: must be >= 2 (the CTC blank and at least one token)")
    print(f"{'preset':<8} {'parameters':>12}  (features={args.features}, vocabulary={args.vocab})")
    for name in list_presets():
        with torch.device("meta"):  # shapes only: a count needs no memory, however large the model
            model = DeepSpeech2(load_preset(name), num_features=args.features, vocab_size=args.vocab)
        print(f"{name:<8} {model.num_params():>12,}")
    return 0

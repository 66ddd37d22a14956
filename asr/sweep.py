"""Hyperparameter sweeps: every combination of a grid of config values, each for several seeds.

``asr sweep CONFIG.yaml --grid optim.lr=3e-4,1e-3 --grid optim.schedule=cosine,linear --seeds 0,1
--out DIR [key=value ...]`` runs ``asr train`` once per point and seed, each in its own process, in
``DIR/<key=value,...>-seed<S>/``. Every point is checked against the config schema before any
training starts, and so is the sweep folder: its ``sweep.md`` and ``sweep.jsonl`` are written only
over an earlier sweep's. A run that fails is reported with its error and the others go on; a run that
already wrote ``model.pt`` is read, not trained again (so an interrupted sweep resumes). Ctrl-C (or
SIGINT sent to the sweep alone) interrupts the runs in progress and starts no other. The
table, one row per point with the mean and per-seed best dev WER, best first, goes to
``DIR/sweep.md``; ``DIR/sweep.jsonl`` holds one record per run.

Example:
    >>> parse_grid_specs(["optim.lr=1e-3,3e-3", "augment.speed_factors=[0.9,1.0],[1.0]"])
    {'optim.lr': ['1e-3', '3e-3'], 'augment.speed_factors': ['[0.9,1.0]', '[1.0]']}
    >>> grid_points({"a": ["1", "2"], "b": ["x"]})
    [{'a': '1', 'b': 'x'}, {'a': '2', 'b': 'x'}]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from asr.config import ConfigError, config_to_dict
from asr.config_file import load_yaml
from asr.outputs import atomic_output, check_output, check_output_folder, json_lines_with, starts_with
from asr.train_config import TrainConfig, resolve_config

logger = logging.getLogger(__name__)


@dataclass
class SweepRun:
    """One training run of a sweep.

    Attributes:
        point: the grid values of this run, ``{key: value}`` as given on the command line.
        seed: its seed.
        run_dir: its output folder.
        best_dev_wer: the best dev WER it reached (None without a dev set or on failure).
        final_loss: the training loss of its last logged step.
        wall_s: seconds it took (0 when reused).
        error: the one-line error of a failed run, else None.
        reused: it had finished before this sweep and was read, not trained.
    """

    point: dict[str, str]
    seed: int
    run_dir: Path
    best_dev_wer: float | None = None
    final_loss: float | None = None
    wall_s: float = 0.0
    error: str | None = None
    reused: bool = False


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets: ``"[1,2],[3]"`` -> ``["[1,2]", "[3]"]``."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    return [v.strip() for v in [*values, current]]


def first_repeated(values: Sequence) -> object | None:
    """The first value that comes again in ``values``, or None: two points that would be one run.

    >>> first_repeated([1, 2, 1]), first_repeated(["a", "b"])
    (1, None)
    """
    return next((v for i, v in enumerate(values) if v in values[:i]), None)


def parse_grid_specs(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["key=v1,v2", ...]`` -> ``{key: [v1, v2]}`` (commas inside brackets belong to a value).

    Raises:
        ConfigError: a spec without ``=``, an empty key or value, a key or one key's value given twice.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        values = _split_values(text)
        if not sep or not key or not all(values):
            raise ConfigError(f"--grid {spec!r}: expected KEY=VALUE[,VALUE...] with no empty value")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        twice = first_repeated(values)
        if twice is not None:  # two runs of one folder (at once, with --jobs), a row twice in the table
            raise ConfigError(f"--grid {key}: value {twice!r} given twice")
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def run_name(point: dict[str, str], seed: int) -> str:
    """The run's folder name: ``optim.lr=1e-3,model.dropout=0.1-seed0``; where ``/``, spaces and
    the like were replaced, or past 120 characters (then cut), made unique with a hash of the whole.

    >>> run_name({"optim.lr": "1e-3", "data.train_manifest": "/d/x.jsonl"}, 1)
    'optim.lr=1e-3,data.train_manifest=_d_x.jsonl~92d7b99567-seed1'
    >>> len(run_name({"data.train_manifest": "/long" * 100}, 0))
    127
    """
    full = ",".join(f"{k}={v}" for k, v in point.items()) or "base"
    name = "".join(c if c.isalnum() or c in "=.,-_+[]" else "_" for c in full)
    if len(name) > 120 or name != full:  # a hash keeps apart values that differ only in what was replaced
        name = f"{name[:110]}~{hashlib.sha1(full.encode()).hexdigest()[:10]}"
    return f"{name}-seed{seed}"


def _read_run(run: SweepRun) -> SweepRun:
    """Fill the run's figures from its ``train_log.jsonl``."""
    log = run.run_dir / "train_log.jsonl"
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.is_file() else []
    ends = [e for e in events if e["event"] in ("epoch", "stop")]  # stop: max_steps/max_minutes inside an epoch
    steps = [e for e in events if e["event"] == "step"]
    run.best_dev_wer = ends[-1].get("best_dev_wer") if ends else None
    run.final_loss = steps[-1]["loss"] if steps else None
    return run


class _Processes:
    """The sweep's running ``asr train`` processes. One is started and listed under the same lock
    that :meth:`interrupt` takes, so that a Ctrl-C either reaches a process or keeps it from
    starting: none is started between the interrupt and the sweep's end, to run unsignalled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = False

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen | None:
        """``cmd`` started with its output to ``log`` (and ``log``'s folder made); None, with
        nothing made, once the sweep is interrupted."""
        with self._lock:
            if self._stopped:
                return None
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w", encoding="utf-8") as out:
                # its own process group: a Ctrl-C reaches it once, from interrupt(), not also from the terminal
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, process_group=0)
            self._running.add(proc)
            return proc

    def wait(self, proc: subprocess.Popen) -> int:
        """Its exit status, once it has ended; it is no longer listed then."""
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._running.discard(proc)

    def interrupt(self) -> None:
        """Send SIGINT to every running process, and start none after."""
        with self._lock:
            self._stopped = True
            for proc in self._running:
                proc.send_signal(signal.SIGINT)


def _train(config: str, overrides: list[str], run: SweepRun, processes: _Processes) -> SweepRun | None:
    """One ``asr train`` process, started by ``processes``; its output goes to ``run_dir/train.out``.
    None when the sweep was interrupted before it started."""
    if (run.run_dir / "model.pt").is_file():
        run.reused = True
        return _read_run(run)
    resume = ["--resume"] if (run.run_dir / "last.pt").is_file() else []
    cmd = [sys.executable, "-m", "asr.cli", "train", config, *overrides, *resume]
    start = time.monotonic()
    proc = processes.start(cmd, run.run_dir / "train.out")
    if proc is None:
        return None
    processes.wait(proc)
    run.wall_s = time.monotonic() - start
    if proc.returncode != 0:
        lines = (run.run_dir / "train.out").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        errors = [line for line in lines if line.startswith("asr: error:")]
        last = errors[-1] if errors else (lines[-1] if lines else "")
        run.error = f"exit {proc.returncode}: {last}"[:300]
    return _read_run(run)


def _check_earlier_run(run_dir: Path, cfg: TrainConfig) -> None:
    """A run already in ``run_dir`` (a checkpoint there) is read or resumed: only if it was made with
    the config the point makes now, its out_dir aside (``--out`` may be spelled another way).

    Raises:
        ConfigError: naming the run and its first settings that differ.
    """
    if not ((run_dir / "model.pt").is_file() or (run_dir / "last.pt").is_file()):
        return  # nothing kept: trained anew (asr train checks the folder)
    try:
        theirs = _flat(load_yaml(run_dir / "config.yaml"))
    except ConfigError as e:
        raise ConfigError(f"{run_dir}: holds a checkpoint but no config of its own to compare ({e}); "
                          "choose another --out") from None
    ours = _flat(config_to_dict(cfg))
    differ = [f"{key}={theirs.get(key)!r} (now {value!r})" for key, value in ours.items()
              if key != "out_dir" and theirs.get(key) != value]
    if differ:
        raise ConfigError(f"{run_dir}: trained with another config ({'; '.join(differ[:3])}"
                          f"{'; ...' if len(differ) > 3 else ''}); choose another --out, or remove the run")


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep(config: str, grid: dict[str, list[str]], seeds: Sequence[int], out_dir: str | Path,
          overrides: Sequence[str] = (), jobs: int = 1,
          on_run: Callable[[SweepRun], None] | None = None) -> list[SweepRun]:
    """Train every grid point for every seed; see the module docstring.

    Args:
        config: the YAML config all runs start from.
        grid: ``{key: [values]}`` (see :func:`parse_grid_specs`).
        seeds: the seeds each point is trained with.
        out_dir: the sweep's folder (created); runs go to ``out_dir/<run_name>``.
        overrides: ``key=value`` applied to every run, before the grid's values.
        jobs: runs trained at once (each is its own process; mind ``threads`` and the GPU).
        on_run: called with each finished run, in the order they finish, one call at a time (never
            from two of the ``jobs`` threads at once).

    Returns:
        The runs, in grid order.

    Raises:
        ConfigError: a point does not make a valid config, two points make one run (a seed or value
            repeated), or a run kept in ``out_dir`` was made with another config (nothing is
            trained then).
    """
    out_dir = Path(out_dir)
    todo: list[tuple[list[str], SweepRun]] = []
    for point in grid_points(grid):
        for seed in seeds:
            run = SweepRun(point, seed, out_dir / run_name(point, seed))
            args = [*overrides, *(f"{k}={v}" for k, v in point.items()), f"seed={seed}", f"out_dir={run.run_dir}"]
            try:
                cfg = resolve_config(config, args)
            except (ConfigError, ValueError, TypeError) as e:
                if str(e).startswith(f"{config}:"):  # the file's own setting (resolve_config names it): every point's
                    raise ConfigError(str(e)) from None
                raise ConfigError(f"sweep point {run_name(point, seed)}: {e}") from None
            if any(run.run_dir == other.run_dir for _, other in todo):
                raise ConfigError(f"sweep point {run.run_dir.name}: given twice (a seed or grid value repeated)")
            _check_earlier_run(run.run_dir, cfg)
            todo.append((args, run))
    check_output_folder(out_dir, "; no sweep written there (choose another --out)")
    records = check_output(out_dir / "sweep.jsonl", lambda p: json_lines_with(p, {"point", "seed", "run_dir"}),
                           "the records of an asr sweep")
    summary = check_output(out_dir / "sweep.md", lambda p: starts_with(p, b"| "), "the table of an asr sweep")
    out_dir.mkdir(parents=True, exist_ok=True)

    processes = _Processes()
    reporting = threading.Lock()  # runs of --jobs that end together are reported one after the other

    def work(item: tuple[list[str], SweepRun]) -> SweepRun | None:
        run = _train(config, *item, processes)
        if run is None:  # interrupted before it started: nothing to report
            return None
        with reporting:
            logger.info("run=%s best_dev_wer=%s error=%s", run.run_dir.name, run.best_dev_wer, run.error)
            if on_run is not None:
                on_run(run)
        return run

    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        runs = [future.result() for future in [pool.submit(work, item) for item in todo]]
    except KeyboardInterrupt:  # no run is started any more; the running ones are interrupted too
        pool.shutdown(wait=False, cancel_futures=True)
        processes.interrupt()
        pool.shutdown()  # their reports come before the sweep's own "interrupted"
        raise
    pool.shutdown()
    with atomic_output(records) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for run in runs:
            f.write(json.dumps({**asdict(run), "run_dir": str(run.run_dir)}) + "\n")
    with atomic_output(summary) as tmp:
        tmp.write_text(table(runs, grid) + "\n", encoding="utf-8")
    return runs


def table(runs: Sequence[SweepRun], grid: dict[str, list[str]]) -> str:
    """A Markdown table, one row per grid point: its values, mean and per-seed best dev WER (%),
    mean final loss, runs failed; points with a dev WER first, lowest mean first."""
    keys = list(grid)
    rows = []
    for point in grid_points(grid):
        mine = [r for r in runs if r.point == point]
        wers = [100 * r.best_dev_wer for r in mine if r.best_dev_wer is not None and r.error is None]
        losses = [r.final_loss for r in mine if r.final_loss is not None and r.error is None]
        mean = statistics.fmean(wers) if wers else math.inf
        cells = [point[k] for k in keys] + [
            f"{mean:.2f}" if wers else "-",
            " ".join(f"{w:.2f}" for w in wers) or "-",
            f"{statistics.fmean(losses):.3f}" if losses else "-",
            str(sum(r.error is not None for r in mine)),
        ]
        rows.append((mean, cells))
    rows.sort(key=lambda row: row[0])  # stable: grid order among equals
    header = [*keys, "dev WER % (mean)", "per seed", "final loss", "failed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for _, cells in rows])

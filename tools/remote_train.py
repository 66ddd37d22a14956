"""Train a recipe on a borrowed GPU machine that is reached only through short, separate commands.

Some GPU machines are lent a command at a time: each command runs for minutes at most, the machine
is held for half an hour, what travels to it is limited (64 MiB here) and so is what comes back
(files of at most 16 MiB). A training run outlives any one command, so this tool splits it up:

  here   pack    Ogg/Opus copies of the train and dev manifests' audio and the wheels the GPU
                 machine lacks, in one folder to carry (default data/gpu, git-ignored)
  there  start   install the wheels, time a short probe of the recipe, size the epochs so that the
                 run ends within --minutes, and launch it detached: it outlives the command
  there  watch   follow the run's log until it ends or --for seconds have passed
  there  finish  wait for the run, then put its model (fp16, `asr export`) in parts of at most
                 --part-mb MB, a SHA256SUMS file and its logs into --out
  here   join    check the parts against SHA256SUMS and join them into a checkpoint

    python tools/remote_train.py pack --manifest exp/ml/data/train-clean-5.jsonl --manifest exp/ml/data/dev-4spk.jsonl
    python tools/remote_train.py start --exp exp/gpu/A --minutes 21 data.max_batch_s=240     # there
    python tools/remote_train.py watch --exp exp/gpu/A --for 540                             # there
    python tools/remote_train.py finish --exp exp/gpu/A --out "$OUT"                         # there
    python tools/remote_train.py join /path/to/fetched/files --out exp/ml/A2/model.pt

`start` runs ``bash RECIPE --conf CONF --ngpu N --exp EXP --stage 3 --stop-stage 5 epochs=E
max_minutes=M [key=value ...]`` with ``EXP/data`` linked to the carried manifests (the recipe's
training, then greedy scoring of the dev set). The probe is the same command for --probe-steps
steps into EXP-probe; its log gives the seconds per step, the steps per epoch, the dev scoring time
and the start-up time, from which E follows (at least 1); M stops the run at the budget anyway.

A bad value or a missing file is one line, ``remote_train: error: ...``, and status 2, before any
work (a probe, a wait for the run). Nothing of the user's is replaced: `pack` refuses two manifests
of one name (their copies would share a folder), `start` removes EXP-probe only when it is a probe
of its own, `finish` writes only into an empty folder, and `join` never over an existing file.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python tools/remote_train.py` from a checkout without an install
# Only modules of the standard library behind these: `start` runs before the wheels are installed.
from asr.errors import run_tool  # noqa: E402
from asr.outputs import OutputError, atomic_output, check_output_folder  # noqa: E402

WHEELS = ["soundfile==0.14.0", "cffi==2.0.0", "pycparser==2.23", "jiwer==4.0.0", "rapidfuzz==3.14.3"]
PIP_PLATFORM = ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"] + [
    arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    for arg in ("--platform", tag)]
SITE = Path(os.environ.get("REMOTE_TRAIN_SITE", "/tmp/remote_train_site"))  # wheels and the `asr` shim


class RemoteError(Exception):
    """A step cannot go on; the message names the file or the cause."""


# ------------------------------------------------------------------------------------------ here
def pack(manifests: list[Path], out: Path, wheels: bool) -> None:
    """Opus copies of each manifest's audio into OUT/data/<name>/, manifests OUT/data/<name>.jsonl.
    A manifest line or an audio file that ``opus_copy`` cannot read is named and left out."""
    for manifest in manifests:
        if not manifest.is_file():
            raise RemoteError(f"{manifest}: {'a folder, not a manifest' if manifest.is_dir() else 'no such manifest'}")
    stems = {}
    for manifest in manifests:  # OUT/data/<stem>: a second manifest of the same name would replace the first's copy
        if manifest.stem in stems:
            raise RemoteError(f"--manifest {stems[manifest.stem]} and {manifest}: both would be packed as "
                              f"{out / 'data' / manifest.stem}.jsonl (rename one)")
        stems[manifest.stem] = manifest
    check_output_folder(out / "data", f"; nothing packed in {out}")
    for manifest in manifests:
        copy = [sys.executable, str(REPO / "tools" / "opus_copy.py"), str(manifest), str(out / "data" / manifest.stem)]
        done = subprocess.run(copy, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE, text=True)
        errors = [line for line in done.stderr.splitlines() if line.startswith("opus_copy: error: ")]
        sys.stderr.writelines(f"{line}\n" for line in done.stderr.splitlines() if line not in errors)
        if done.returncode not in (0, 1) or "Traceback (most recent call last)" in done.stderr:  # 1: some left out
            raise RemoteError(errors[-1].removeprefix("opus_copy: error: ") if errors
                              else f"{manifest}: the Opus copy failed (exit {done.returncode})")
    if wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PIP_PLATFORM,
                               "-d", str(out / "wheels"), *WHEELS], stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            last = ([line for line in done.stderr.splitlines() if line.strip()] or [f"exit {done.returncode}"])[-1]
            raise RemoteError(f"{out / 'wheels'}: `pip download` failed ({last.strip()}); --no-wheels packs "
                              "without them")
        sys.stderr.write(done.stderr)
    size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"{out}: {size_mb:.1f} MiB to carry")


def join(parts_dir: Path, out: Path) -> None:
    """Check the parts against SHA256SUMS, join them into OUT, unpack the logs beside it."""
    if os.path.lexists(out):
        raise RemoteError(f"{out}: already exists; not overwritten (remove it or choose another --out)")
    sums_file = parts_dir / "SHA256SUMS"
    if not sums_file.is_file():
        raise RemoteError(f"{sums_file}: missing; is {parts_dir} the folder `finish` wrote?")
    sums = _read_sums(sums_file)
    parts = sorted((name for name in sums if re.fullmatch(r"model\.pt\.part\d+", name)),
                   key=lambda name: int(name.removeprefix("model.pt.part")))  # part100 after part99
    missing = [what for what, listed in (("model.pt parts", parts), ("model.pt", "model.pt" in sums),
                                         ("logs.tar.gz", "logs.tar.gz" in sums)) if not listed]
    if missing:
        raise RemoteError(f"{sums_file}: lists no {missing[0]}; is {parts_dir} the folder `finish` wrote?")
    for name in [*parts, "logs.tar.gz"]:
        if not (parts_dir / name).is_file():
            raise RemoteError(f"{parts_dir / name}: missing (SHA256SUMS lists it)")
        if _sha256(parts_dir / name) != sums[name]:
            raise RemoteError(f"{parts_dir / name}: SHA-256 differs from SHA256SUMS (a broken transfer)")
    check_output_folder(out.parent, f"; {out} not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:  # out appears whole and checked, or not at all
        with open(tmp, "wb") as f:
            for name in parts:
                f.write((parts_dir / name).read_bytes())
        if _sha256(tmp) != sums["model.pt"]:
            raise RemoteError(f"{parts_dir}: the joined parts do not match model.pt's SHA-256")
        from asr.checkpoint import CheckpointError, load_checkpoint  # torch: imported once it is needed

        try:
            load_checkpoint(tmp)
        except CheckpointError as e:  # named by the temporary file: said of the parts instead
            raise RemoteError(f"{parts_dir}: the joined model.pt is {str(e).removeprefix(f'{tmp}: ')}") from None
    logs = out.parent / "remote"
    if os.path.lexists(logs):
        print(f"{out}: joined from {len(parts)} parts; logs left in {parts_dir / 'logs.tar.gz'} ({logs} exists)")
        return
    try:
        with tarfile.open(parts_dir / "logs.tar.gz") as tar:
            tar.extractall(logs, filter="data")
    except tarfile.TarError as e:
        raise RemoteError(f"{parts_dir / 'logs.tar.gz'}: cannot unpack the logs ({e}); {out} is joined") from None
    print(f"{out}: joined from {len(parts)} parts; logs in {logs}")


# ----------------------------------------------------------------------------------------- there
def start(args: argparse.Namespace) -> None:
    args.exp, args.dir, args.recipe = args.exp.resolve(), args.dir.resolve(), (REPO / args.recipe).resolve()
    if _running(args.exp):
        raise RemoteError(f"{args.exp}: a run is going on (pid {_pid(args.exp)}); watch it")
    if not (args.dir / "data").is_dir():  # before the wheels, whose absence would be named instead
        raise RemoteError(f"{args.dir / 'data'}: missing; carry the folder `pack` wrote")
    probe_dir = Path(f"{args.exp}-probe")
    restart = (args.exp / "last.pt").exists()  # a restart resumes: no new probe, the same epochs
    if restart and not (args.exp / "plan.json").is_file():
        raise RemoteError(f"{args.exp / 'plan.json'}: missing, beside a checkpoint of a run that `start` did not "
                          "plan; choose another --exp")
    if not restart and os.path.lexists(probe_dir) and not (probe_dir / "data").is_symlink():
        raise RemoteError(f"{probe_dir}: exists and is not a probe of remote_train; not removed (remove it or "
                          "choose another --exp)")
    env = _environment(args.dir / "wheels")
    log = _link_data(args.exp, args.dir) / "remote.log"
    if not restart:
        shutil.rmtree(probe_dir, ignore_errors=True)
        _link_data(probe_dir, args.dir)
        t0 = time.monotonic()
        probe = _recipe(args, probe_dir, 4, 4, [f"max_steps={args.probe_steps}", "epochs=1000", "data.sortagrad=false",
                                             f"log_every_steps={max(1, args.probe_steps // 6)}",
                                             "keep_epoch_checkpoints=0", *args.overrides])
        done = subprocess.run(probe, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise RemoteError(f"{probe_dir}: the probe failed (exit {done.returncode}); the end of its output:\n"
                              f"{done.stdout[-3000:]}")
        plan = plan_epochs(_events(probe_dir / "train_log.jsonl"), time.monotonic() - t0, 60 * args.minutes,
                           args.dev_every)
        (args.exp / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    plan = json.loads((args.exp / "plan.json").read_text())
    command = _recipe(args, args.exp, 3, 5, [f"epochs={plan['epochs']}", f"max_minutes={plan['max_minutes']}",
                                          f"data.dev_every_epochs={args.dev_every}", *args.overrides])
    with open(log, "ab") as f:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own session: it outlives this command
    (args.exp / "pid").write_text(f"{process.pid}\n")
    print(json.dumps(plan))
    print(f"started pid {process.pid}: {' '.join(command)}\nlog: {log}")


def plan_epochs(events: list[dict], probe_wall_s: float, budget_s: float, dev_every: int,
                margin: float = 0.9) -> dict:
    """Epochs that fit ``budget_s``, from a probe run's log (its step and stop events).

    The steps after the first logged window are timed (the first holds CUDA's warm-up); the stop
    event says how long the dev scoring took (``dev_s``); what else the probe spent outside its
    training loop (imports, CMVN statistics, audio cache, checkpoints) is start-up, paid again by
    the run, as is one more dev scoring by the recipe's evaluation stage. ``margin`` of the rest
    goes to training (epoch ends also write checkpoints, which the probe does not time). On a GPU
    the plan also gives the probe's peak of allocated GPU memory (``gpu_peak_gb``).

    Example:
        >>> steps = [{"event": "step", "run_steps": n, "elapsed_s": 5.0 + n, "batches": 40} for n in (5, 10, 15)]
        >>> plan = plan_epochs(steps + [{"event": "stop", "elapsed_s": 20.0, "dev_s": 10.0}], 60.0, 600.0, dev_every=5)
        >>> plan["step_s"], plan["dev_s"], plan["startup_s"], plan["epoch_s"], plan["epochs"]
        (1.0, 10.0, 30.0, 42.0, 12)
    """
    steps = [e for e in events if e["event"] == "step"]
    stops = [e for e in events if e["event"] == "stop"]
    if len(steps) < 2 or not stops:
        raise RemoteError("the probe logged too few steps to time (raise --probe-steps)")
    if "dev_s" not in stops[-1]:
        raise RemoteError("the probe did not score the dev set at its stop: is there a dev manifest?")
    first, last = steps[0], steps[-1]
    step_s = (last["elapsed_s"] - first["elapsed_s"]) / (last["run_steps"] - first["run_steps"])
    dev_s = stops[-1]["dev_s"]
    startup_s = probe_wall_s - stops[-1]["elapsed_s"] - dev_s
    epoch_s = last["batches"] * step_s + dev_s / dev_every
    train_s = budget_s - startup_s - dev_s  # the recipe scores the dev set once more after training
    epochs = max(1, math.floor(margin * train_s / epoch_s))
    plan = {"epochs": epochs, "max_minutes": round(max(train_s, 60.0) / 60, 2), "step_s": round(step_s, 3),
            "steps_per_epoch": last["batches"], "dev_s": round(dev_s, 3), "startup_s": round(startup_s, 1),
            "epoch_s": round(epoch_s, 1), "budget_s": budget_s}
    if "gpu_peak_gb" in stops[-1]:  # the probe's batches on the GPU: the headroom for larger ones
        plan["gpu_peak_gb"] = stops[-1]["gpu_peak_gb"]
    return plan


def watch(exp: Path, seconds: float, every: float) -> bool:
    """Print each finished epoch (and stop) of the run; True once the run's process has ended."""
    deadline, seen = time.monotonic() + seconds, 0
    while True:
        events = _events(exp / "train_log.jsonl")
        for e in events[seen:]:
            if e["event"] in ("epoch", "stop"):
                dev = f" dev_wer={e['dev_wer']:.4f}" if "dev_wer" in e else ""
                print(f"{e['event']} epoch={e['epoch']} step={e['step']} elapsed_s={e['elapsed_s']:.0f}{dev}", flush=True)
        seen = len(events)
        if not _running(exp):
            log = exp / "remote.log"
            tail = log.read_text(errors="replace").splitlines()[-8:] if log.is_file() else []
            print("run ended:\n" + "\n".join(tail))
            return True
        if time.monotonic() >= deadline:
            print(f"still running after {seconds:.0f} s", flush=True)
            return False
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))


def finish(exp: Path, out: Path, part_mb: float, wait_s: float) -> None:
    """The run's model as fp16 parts, SHA256SUMS and logs.tar.gz in OUT (8 files at most)."""
    if any(out.iterdir()) if out.is_dir() else os.path.lexists(out):
        raise RemoteError(f"{out}: not an empty folder; refusing to write into it")
    check_output_folder(out, f"; nothing written in {out}")  # before the wait, not after it
    if not watch(exp, wait_s, 10):
        try:
            os.killpg(_pid(exp), signal.SIGINT)  # best.pt and last.pt hold what it did
        except ProcessLookupError:
            pass  # it ended on its own meanwhile
        if not watch(exp, 120, 5):
            raise RemoteError(f"{exp}: the run did not stop within 2 minutes of SIGINT")
    source = next((exp / name for name in ("model.pt", "best.pt", "last.pt") if (exp / name).is_file()), None)
    if source is None:
        raise RemoteError(f"{exp}: no checkpoint written; see {exp / 'remote.log'}")
    out.mkdir(parents=True, exist_ok=True)
    half = out / "model.pt"
    done = subprocess.run([sys.executable, "-m", "asr.cli", "export", str(source), "--out", str(half)],
                          env=_environment(None), cwd=REPO, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or [f"exit {done.returncode}"])[-1]
        raise RemoteError(f"{source}: `asr export` failed ({last.strip()})")
    sys.stderr.write(done.stderr)
    data, part_bytes = half.read_bytes(), int(part_mb * 2**20)
    sums = {"model.pt": hashlib.sha256(data).hexdigest()}
    half.unlink()
    for i in range(0, len(data), part_bytes):
        name, part = f"model.pt.part{i // part_bytes:02d}", data[i:i + part_bytes]
        (out / name).write_bytes(part)
        sums[name] = hashlib.sha256(part).hexdigest()
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for path in ["config.yaml", "train_log.jsonl", "plan.json", "remote.log", "log", "decode"]:
            if (exp / path).exists():
                tar.add(exp / path, arcname=path, filter=lambda info: None if info.name.endswith(".pt") else info)
    sums["logs.tar.gz"] = _sha256(out / "logs.tar.gz")
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    files = sorted(out.iterdir())
    print(f"{source} -> {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB in {out}")


# --------------------------------------------------------------------------------------- helpers
def _environment(wheels: Path | None) -> dict[str, str]:
    """This process's environment with ``asr`` on PATH and, where the packages that ``pack`` fetched
    are missing, the carried wheels installed."""
    missing = [name for name in ("soundfile", "jiwer") if importlib.util.find_spec(name) is None]
    if missing and wheels is not None:
        install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                   "--upgrade", "--target", str(SITE), *map(str, sorted(wheels.glob("*.whl")))]
        if not any(wheels.glob("*.whl")) or subprocess.run(install).returncode != 0:
            raise RemoteError(f"{', '.join(missing)} missing here, and the wheels in {wheels} do not install")
    (SITE / "bin").mkdir(parents=True, exist_ok=True)
    for name, command in (("asr", f'"{sys.executable}" -m asr.cli'), ("python", f'"{sys.executable}"')):
        shim = SITE / "bin" / name  # `python` too: some machines have only python3
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    path = [str(SITE), str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p), PYTHONUNBUFFERED="1",
                PATH=f"{SITE / 'bin'}{os.pathsep}{os.environ['PATH']}")


def _link_data(exp: Path, carried: Path) -> Path:
    """EXP/data -> the carried manifests; returns EXP."""
    if not (carried / "data").is_dir():
        raise RemoteError(f"{carried / 'data'}: missing; carry the folder `pack` wrote")
    exp.mkdir(parents=True, exist_ok=True)
    link = exp / "data"
    if link.is_symlink() and not link.exists():
        link.unlink()  # a link of an earlier start to a carried folder that moved
    if not link.exists():
        link.symlink_to((carried / "data").resolve(), target_is_directory=True)
    return exp


def _recipe(args: argparse.Namespace, exp: Path, first_stage: int, last_stage: int, overrides: list[str]) -> list[str]:
    return ["bash", str(args.recipe), "--conf", args.conf, "--ngpu", str(args.ngpu), "--exp", str(exp),
            "--stage", str(first_stage), "--stop-stage", str(last_stage), *overrides]


def _events(log: Path) -> list[dict]:
    """The events of a training log; a last line still being written is read the next time.

    Raises:
        RemoteError: another line is not a JSON event.
    """
    if not log.is_file():
        return []
    lines = log.read_text(errors="replace").splitlines()
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not (isinstance(event, dict) and "event" in event):
            if number == len(lines) and event is None:
                break  # the trainer is writing it
            raise RemoteError(f"{log}:{number}: not an event of a training log")
        events.append(event)
    return events


def _pid(exp: Path) -> int | None:
    """The run's process id (that of its process group), from EXP/pid; None when there is none.

    Raises:
        RemoteError: the file holds something else (0 or 1 would name this process's group or init).
    """
    pid_file = exp / "pid"
    if not pid_file.is_file():
        return None
    text = pid_file.read_text(errors="replace").strip()
    if not text.isdigit() or int(text) < 2:
        raise RemoteError(f"{pid_file}: {text[:20]!r} is not a process id; remove it if no run is going on")
    return int(text)


def _running(exp: Path) -> bool:
    """Whether a live (not zombie) process is left in the run's process group (Linux /proc)."""
    group = _pid(exp)
    if group is None:
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # the process ended while being read
        if int(fields[2]) == group and fields[0] not in "ZX":
            return True
    return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_sums(sums_file: Path) -> dict[str, str]:
    """File name -> SHA-256 of a ``sha256sum``-style file (``HEX  NAME`` lines), as `finish` writes it."""
    sums = {}
    for number, line in enumerate(sums_file.read_text(errors="replace").splitlines(), 1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
            raise RemoteError(f"{sums_file}:{number}: not a line of SHA256SUMS (a SHA-256 in hex, then a file name)")
        sums[fields[1]] = fields[0]
    return sums


def _check_options(args: argparse.Namespace) -> None:
    """Refuse the values that cannot work, before anything is done (a probe, a wait for the run).

    Raises:
        RemoteError: naming the option and the value.
    """
    numbers = []
    if args.command == "start":
        numbers = [("--ngpu", args.ngpu, ">= 0 (0: CPU)", lambda v: v >= 0),
                   ("--minutes", args.minutes, "a positive number of minutes", lambda v: 0 < v < math.inf),
                   ("--probe-steps", args.probe_steps, ">= 2 (two logged steps time one)", lambda v: v >= 2),
                   ("--dev-every", args.dev_every, ">= 1", lambda v: v >= 1)]
    elif args.command == "watch":
        numbers = [("--for", args.seconds, "a number of seconds >= 0", lambda v: 0 <= v < math.inf),
                   ("--every", args.every, "a positive number of seconds", lambda v: 0 < v < math.inf)]
    elif args.command == "finish":
        numbers = [("--part-mb", args.part_mb, "a positive number of MiB (a byte at least)",
                    lambda v: 1 <= v * 2**20 < math.inf),
                   ("--wait", args.wait, "a number of seconds >= 0", lambda v: 0 <= v < math.inf)]
    for option, value, rule, ok in numbers:
        if not ok(value):
            raise RemoteError(f"{option} {value:g}: must be {rule}")
    if args.command == "start":
        recipe = (REPO / args.recipe).resolve()
        if not recipe.is_file():
            raise RemoteError(f"--recipe {recipe}: no such file")
        conf = recipe.parent / "conf" / f"{args.conf}.yaml"
        if not conf.is_file():
            there = sorted(p.stem for p in conf.parent.glob("*.yaml"))
            raise RemoteError(f"--conf {args.conf}: no {conf} (there: {', '.join(there) or 'none'})")
        for override in args.overrides:
            key, equals, _ = override.partition("=")
            if not key or not equals or key.startswith("-"):
                raise RemoteError(f"{override!r}: not key=value (an override for `asr train`, e.g. data.max_batch_s=240)")
        check_output_folder(args.exp, "; no run started (choose another --exp)")
    if args.command == "watch" and _pid(args.exp) is None:
        raise RemoteError(f"{args.exp / 'pid'}: missing; no run was started in {args.exp} (`start` one)")
    if args.command == "finish" and not args.exp.is_dir():
        raise RemoteError(f"{args.exp}: no such folder; no run to finish")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: Opus copies of manifests and wheels, in one folder to carry")
    p.add_argument("--manifest", type=Path, action="append", required=True, help="a manifest (repeat: train, dev)")
    p.add_argument("--dir", type=Path, default=Path("data/gpu"))
    p.add_argument("--no-wheels", dest="wheels", action="store_false", help="skip `pip download`")
    p = sub.add_parser("start", help="there: probe, size the epochs, launch the recipe detached")
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--dir", type=Path, default=Path("data/gpu"))
    p.add_argument("--recipe", type=Path, default=Path("recipes/mini_librispeech/run.sh"))
    p.add_argument("--conf", default="medium_aug")
    p.add_argument("--ngpu", type=int, default=1)
    p.add_argument("--minutes", type=float, default=21.0,
                   help="the run's budget, start-up and scoring included (the probe, a minute or two, comes first)")
    p.add_argument("--probe-steps", type=int, default=30)
    p.add_argument("--dev-every", type=int, default=10,
                   help="score the dev set every N epochs (and after the last): each scoring costs training time")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="for `asr train`, e.g. data.max_batch_s=240")
    p = sub.add_parser("watch", help="there: follow the run until it ends or --for seconds pass")
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--for", dest="seconds", type=float, default=540.0)
    p.add_argument("--every", type=float, default=20.0)
    p = sub.add_parser("finish", help="there: wait for the run, then fp16 parts, SHA256SUMS and logs into --out")
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--part-mb", type=float, default=15.0, help="MiB per part")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait before stopping the run (SIGINT)")
    p = sub.add_parser("join", help="here: check the parts and join them into a checkpoint")
    p.add_argument("parts_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return run_tool("remote_train", lambda: _run(args), errors=(RemoteError, OutputError))


def _run(args: argparse.Namespace) -> None:
    _check_options(args)
    if args.command == "pack":
        pack(args.manifest, args.dir, args.wheels)
    elif args.command == "start":
        start(args)
    elif args.command == "watch":
        watch(args.exp, args.seconds, args.every)
    elif args.command == "finish":
        finish(args.exp, args.out, args.part_mb, args.wait)
    else:
        join(args.parts_dir, args.out)


if __name__ == "__main__":
    sys.exit(main())

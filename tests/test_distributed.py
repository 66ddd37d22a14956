"""Data-parallel training through torchrun, on CPU with the Gloo backend (two processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr.data import DurationBatchSampler
from asr.datasets.digits import DIGIT_WORDS
from asr.manifest import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]


def test_sharded_sampler_splits_batches_between_ranks():
    durations = [0.5 + 0.01 * i for i in range(100)]
    full = DurationBatchSampler(durations, max_batch_s=4.0, seed=1)
    full.set_epoch(1)
    shards = [DurationBatchSampler(durations, max_batch_s=4.0, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(1)
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == len(full) // 2
    assert not {i for batch in a for i in batch} & {i for batch in b for i in batch}
    assert a + b != [] and sorted(map(tuple, a + b)) == sorted(map(tuple, list(full)[: 2 * len(a)]))
    with pytest.raises(ValueError, match="rank"):
        DurationBatchSampler(durations, max_batch_s=4.0, rank=2, world_size=2)


@pytest.mark.slow
def test_torchrun_two_processes_train_save_and_resume_exactly(shared_data, tmp_path):
    """Two ranks train and rank 0 saves. A run stopped inside its second epoch and resumed logs the
    losses and ends with the weights of the run that did not stop: dropout and dither draw from a
    generator seeded by (seed, rank, step), so no rank's random state needs saving (when last.pt
    held rank 0's, both ranks went on with it and the runs differed)."""
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, _digits(shared_data, 40))
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\nepochs: 2\nthreads: 1\nlog_every_steps: 1\nmodel:\n  dropout: 0.3\n"
                      "features:\n  dither: 1.0\noptim:\n  warmup_steps: 0\n  schedule: constant\n"
                      "data:\n  max_batch_s: 2.0\n")  # 5 steps per epoch and rank; the schedule ignores max_steps

    def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(_torchrun_train(config, out, manifest, *extra), cwd=REPO, env=_ENV,
                              capture_output=True, text=True, timeout=240)
        # the ranks' own messages come before the launcher's summary, which names only the signal
        ranks = [line for line in proc.stderr.splitlines() if "torch/distributed/elastic" not in line]
        assert proc.returncode == 0, "\n".join(ranks[:40]) + "\n...\n" + proc.stderr[-1500:]
        return proc

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert torchrun(whole).stdout.count("model:") == 1  # rank 0 reports, rank 1 stays quiet
    single = DurationBatchSampler([0.5] * 40, max_batch_s=2.0)
    events = [json.loads(line) for line in (whole / "train_log.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert steps[0]["batches"] == len(single) // 2 == 5  # each rank runs half of the epoch's batches
    assert [e["event"] for e in events].count("epoch") == 2
    ckpt = torch.load(whole / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model_state"])  # the bare model, not the DDP wrapper

    torchrun(resumed, "max_steps=7")
    stopped = torch.load(resumed / "last.pt", weights_only=True)["train_state"]
    assert (stopped["step"], stopped["epoch"], stopped["batches_done"]) == (7, 1, 2)
    torchrun(resumed, "--resume", "max_steps=0")

    def losses(run: Path) -> list[float]:
        return [e["loss"] for e in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
                if e["event"] == "step"]

    assert len(losses(whole)) == 10 and losses(resumed) == losses(whole)
    weights = [torch.load(run / "last.pt", weights_only=True)["model_state"] for run in (whole, resumed)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slow
def test_ctrl_c_under_torchrun_stops_every_rank_at_one_step_and_saves_it(shared_data, tmp_path):
    """Ctrl-C at a terminal reaches torchrun's launcher, which sends SIGINT to each rank (every rank
    runs in a session of its own) and kills them 30 s later. Each rank stopped at once, losing the
    steps since the last checkpoint; now the ranks agree on a step, even when one rank alone got
    the signal, rank 0 saves last.pt there, every rank exits with one line, and --resume goes on."""
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, _digits(shared_data, 16))
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\nepochs: 500\nthreads: 1\nlog_every_steps: 1\n"
                      "data:\n  max_batch_s: 1.0\n  num_workers: 1\n")  # 4 steps per epoch and rank
    out = tmp_path / "run"
    log = out / "train_log.jsonl"

    def interrupted_run(*extra: str, after_step: int, rank: int | None) -> tuple[list[str], int]:
        """A run stopped by SIGINT to the launcher (rank None) or to one rank once it logged a step
        past ``after_step``: its stderr lines and the step of its last.pt."""
        run = subprocess.Popen(_torchrun_train(config, out, manifest, *extra), cwd=REPO, env=_ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 120
        while not (log.is_file() and _logged_steps(log)[-1:] > [after_step]) and run.poll() is None:
            assert time.monotonic() < deadline, "no training step logged"
            time.sleep(0.01)
        if rank is None:
            os.killpg(run.pid, signal.SIGINT)  # as the terminal sends it: to the launcher's process group
        else:
            os.kill(_rank_pid(run.pid, rank), signal.SIGINT)
        _, err = run.communicate(timeout=120)
        lines = err.splitlines()
        assert lines.count("asr: interrupted") == 2 and "Error" not in err.split("asr: interrupted")[0], err
        step = torch.load(out / "last.pt", weights_only=True)["train_state"]["step"]
        assert _logged_steps(log) == list(range(1, step + 1)), err  # every rank stopped at the step rank 0 logged
        assert sum(f"stopped at step={step} " in line for line in lines) == 1, err  # said by rank 0
        return lines, step

    _, first = interrupted_run(after_step=0, rank=1)  # one rank's request stops both
    lines, second = interrupted_run("--resume", after_step=first, rank=None)
    assert first < second < 500 * 4
    assert "SignalException: Process" in lines[-1], lines  # the launcher's own traceback, of the SIGINT it got


@pytest.mark.slow
def test_ctrl_c_under_torchrun_in_rank_0s_dev_scoring_stops_every_rank_and_resume_scores_it(shared_data, tmp_path):
    """Rank 0 scores the dev set at an epoch's end while the other ranks wait. A Ctrl-C then was
    noticed after the scoring only, and one longer than the launcher's 30 s lost the epoch; now the
    scoring stops at its next batch, every rank learns it where it waits, rank 0 saves the epoch
    without its end, every rank exits with one line, and --resume does the end."""
    manifest, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    write_manifest(manifest, _digits(shared_data, 8))
    corrupt = tmp_path / "corrupt.wav"  # shortest, so scored first: its warning says the scoring has begun
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    write_manifest(dev, [Utterance(audio_filepath=str(corrupt), duration=0.1, text="one"),
                         *_digits(shared_data, 100) * 3])  # ~2 s to score
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\nepochs: 2\nthreads: 1\nlog_every_steps: 1\n"
                      f"data:\n  max_batch_s: 1.0\n  dev_manifest: {dev}\n  eval_batch_s: 0.6\n")  # 2 steps per rank
    out = tmp_path / "run"
    run = subprocess.Popen(_torchrun_train(config, out, manifest), cwd=REPO, env=_ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    err = ""
    for line in run.stderr:
        err += line
        if "skipped unreadable audio: " in line and str(corrupt) in line:  # rank 0's first batch of the scoring
            os.killpg(run.pid, signal.SIGINT)  # as the terminal sends it: to the launcher's process group
            break
    err += run.communicate(timeout=120)[1]
    lines = err.splitlines()
    assert lines.count("asr: interrupted") == 2 and "Traceback" not in err.split("asr: interrupted")[0], err
    assert sum("stopped at step=2 (epoch 1, batch 2 of 2) in the dev scoring of the epoch's end; " in line
               for line in lines) == 1, err  # said by rank 0
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["step", "step"]  # the scoring did not finish
    saved = torch.load(out / "last.pt", weights_only=True)["train_state"]
    assert (saved["step"], saved["epoch"], saved["batches_done"]) == (2, 0, 2)

    resumed = subprocess.run(_torchrun_train(config, out, manifest, "--resume"), cwd=REPO, env=_ENV,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events] == [("step", 1), ("step", 2), ("epoch", 2), ("step", 3),
                                                          ("step", 4), ("epoch", 4)]
    assert all("dev_wer" in e for e in events if e["event"] == "epoch")
    assert torch.load(out / "model.pt", weights_only=True)["metrics"]["step"] in (2, 4)


@pytest.mark.slow
def test_a_batch_unreadable_on_one_rank_is_skipped_by_every_rank(shared_data, tmp_path):
    """One rank's batch of unreadable files was skipped by that rank alone, while the other ran the
    step and waited in its collectives for a rank that was one step ahead: the ranks fell out of step
    and the run hung. Now every rank skips that step. The unreadable file, and a file that reads with
    a warning, are each warned of once a run, by rank 0 (they were once a rank that read them)."""
    corrupt = tmp_path / "corrupt.wav"
    cancelled = shared_data / "sphere/123_2pcle_shn.sph"  # stereo, one channel the other's negative
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    manifest = tmp_path / "train.jsonl"
    digits = _digits(shared_data, 6)
    digits[0] = Utterance(digits[0].audio_filepath, digits[0].duration, "")  # for a data check's warning
    write_manifest(manifest, [*digits, Utterance(audio_filepath=str(corrupt), duration=0.5, text="one"),
                              Utterance(audio_filepath=str(cancelled), duration=1.856, text="one")])
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\nepochs: 3\nthreads: 1\nlog_every_steps: 1\n"
                      "data:\n  max_batch_s: 0.5\n")  # one file a batch: 4 batches per epoch and rank
    out = tmp_path / "run"
    proc = subprocess.run(_torchrun_train(config, out, manifest), cwd=REPO, env=_ENV, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    named = [line for line in proc.stderr.splitlines() if f"{corrupt}: " in line or f"{cancelled}: " in line]
    assert [line.split(": ")[1] for line in named] == ["warning"] * 2, proc.stderr  # rank 0's, once a run
    assert sorted(line.split(f"{tmp_path}/")[0].split(f"{shared_data}/")[0] for line in named) == [
        "asr: warning: ", "asr: warning: skipped unreadable audio: "], named
    assert proc.stderr.count("asr: model=tiny ") == 1  # information from rank 0 only
    empty = [line for line in proc.stderr.splitlines() if "have an empty transcript" in line]
    assert len(empty) == 1 and empty[0].startswith("asr: warning: "), proc.stderr  # the data checks: rank 0 only
    steps = [e for e in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 10))  # 3 of 4 batches an epoch, on both ranks
    assert steps[-1]["skipped_batches"] == 3


# With PYTHONUNBUFFERED (common in containers), print() writes a line's text and its newline apart,
# and two ranks, which share one stderr, made one line of two now and then; the CLI's last lines are
# one write each (asr.errors.say), which the checks of whole lines test here.
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _digits(shared_data: Path, count: int) -> list[Utterance]:
    """The first ``count`` of jackson's FSDD recordings numbered 1, 10-19, 100-..., as utterances of 0.5 s."""
    recordings = sorted((shared_data / "fsdd" / "recordings").glob("*_jackson_1*.wav"))[:count]
    return [Utterance(audio_filepath=str(p), duration=0.5, text=DIGIT_WORDS[int(p.name[0])]) for p in recordings]


def _torchrun_train(config: Path, out: Path, manifest: Path, *extra: str) -> list[str]:
    """``asr train`` on two processes through torchrun; ``--standalone``, as recipes/common.sh: the
    launcher binds a free port itself (no race with another test)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "asr.cli", "train", str(config), f"out_dir={out}", f"data.train_manifest={manifest}", *extra]


def _logged_steps(log: Path) -> list[int]:
    return [json.loads(line)["step"] for line in log.read_text().splitlines() if '"event": "step"' in line]


def _rank_pid(launcher: int, rank: int) -> int:
    """The process id of the torchrun worker of ``rank`` (a child of ``launcher``; Linux)."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended, or not a process
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no rank {rank} among the children of {launcher}")

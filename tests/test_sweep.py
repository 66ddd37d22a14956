"""``asr sweep``: a grid of real (tiny) training runs on real audio, one failing, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf

from asr.cli import main
from asr.config import ConfigError

REPO = Path(__file__).resolve().parents[1]

UTTS = ["8226-274371-0020", "5652-19215-0032", "4088-158077-0078", "4406-16882-0033",
        "4406-16883-0023", "5652-19215-0059"]


@pytest.fixture(scope="module")
def manifests(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sweep_data")
    entries = []
    for uid in UTTS:
        speaker, chapter, _ = uid.split("-")
        folder = shared_data / "LibriSpeech" / "dev-4spk" / speaker / chapter
        texts = dict(line.split(" ", 1) for line in (folder / f"{speaker}-{chapter}.trans.txt").read_text().splitlines())
        path = folder / f"{uid}.flac"
        entries.append({"audio_filepath": str(path), "duration": sf.info(path).duration, "text": texts[uid]})
    out = {}
    for name, part in (("train", entries[:4]), ("dev", entries[4:])):
        out[name] = tmp / f"{name}.jsonl"
        out[name].write_text("".join(json.dumps(e) + "\n" for e in part))
    out["conf"] = tmp / "conf.yaml"
    out["conf"].write_text(f"preset: tiny\ndevice: cpu\nthreads: 1\nepochs: 2\ndata:\n  dev_manifest: {out['dev']}\n"
                           "  max_batch_size: 4\nfeatures:\n  kind: fbank\noptim:\n  warmup_steps: 1\n")
    return out


def test_sweep_trains_every_point_reports_failures_and_resumes(manifests, tmp_path, capsys):
    out = tmp_path / "sweep"
    missing = tmp_path / "missing.jsonl"
    args = ["sweep", str(manifests["conf"]), "--out", str(out), "--jobs", "2",
            "--grid", f"data.train_manifest={manifests['train']},{missing}", "--grid", "optim.lr=1e-3,3e-2",
            "epochs=3"]  # key=value for every run, after the options
    assert main(args) == 1  # some runs failed
    captured = capsys.readouterr()
    assert "2 of 4 runs failed" in captured.err and len(captured.err.strip().splitlines()) == 1
    progress = [line for line in captured.out.splitlines() if "-seed0: best dev WER" in line]
    assert len(progress) == 4
    failed = [line for line in progress if "failed (exit 2: asr: error: " in line]
    assert len(failed) == 2 and all("missing.jsonl" in line for line in failed)

    records = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert [r["point"]["optim.lr"] for r in records] == ["1e-3", "3e-2", "1e-3", "3e-2"]  # grid order
    good = [r for r in records if r["error"] is None]
    assert len(good) == 2 and all(r["point"]["data.train_manifest"] == str(manifests["train"]) for r in good)
    for r in good:
        run_dir = Path(r["run_dir"])
        assert (run_dir / "model.pt").is_file()
        events = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        assert r["best_dev_wer"] == events[-1]["best_dev_wer"] and 0 <= r["best_dev_wer"]
        assert r["final_loss"] == [e for e in events if e["event"] == "step"][-1]["loss"]
        assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2]  # epochs=3, not the config's 2
    configs = {Path(r["run_dir"]).name: (Path(r["run_dir"]) / "config.yaml").read_text() for r in good}
    assert any("lr: 0.03" in c for c in configs.values()) and any("lr: 0.001" in c for c in configs.values())

    table = (out / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| data.train_manifest | optim.lr | dev WER % (mean) | per seed | final loss | failed |")
    assert all(str(manifests["train"]) in row and row.endswith("| 0 |") for row in table[2:4])  # scored rows first
    assert all(str(missing) in row and "| - | - | - | 1 |" in row for row in table[4:6])

    # again: the finished runs are read, not trained; the failed ones are tried again
    assert main(args) == 1
    assert capsys.readouterr().out.count("already trained") == 2


def test_sweep_reads_the_dev_score_of_a_run_stopped_inside_an_epoch(manifests, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "max_steps=1,3",
            f"data.train_manifest={manifests['train']}", "data.max_batch_size=2"]  # 2 steps an epoch
    assert main(args) == 0
    for record in (json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()):
        events = [json.loads(line) for line in (Path(record["run_dir"]) / "train_log.jsonl").read_text().splitlines()]
        ends = {"1": ["stop"], "3": ["epoch", "stop"]}[record["point"]["max_steps"]]  # stopped in epoch 1 or 2
        assert [e["event"] for e in events if e["event"] != "step"] == ends
        scores = [e["dev_wer"] for e in events if "dev_wer" in e]
        assert record["best_dev_wer"] == events[-1]["best_dev_wer"] == min(scores) and len(scores) == len(ends)


def test_sweep_checks_every_point_before_training(manifests, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "optim.lr=1e-3",
                 "--grid", "optim.no_such_key=1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr: error: sweep point ") and "no_such_key" in err[0]
    assert not out.exists()  # nothing trained
    assert main(["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "optim.lr"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "optim.lr=1", "--seeds", "a"]) == 2
    assert "--seeds 'a'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"  # a setting of the file itself: named by file and line, not by a point
    bad.write_text(manifests["conf"].read_text() + "  lrr: 1\n")  # in its optim section
    assert main(["sweep", str(bad), "--out", str(out), "--grid", "optim.lr=1e-3,1e-2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lrr_line = bad.read_text().splitlines().index("  lrr: 1") + 1
    assert len(err) == 1 and err[0].startswith(f"asr: error: {bad}:{lrr_line}: unknown key 'optim.lrr'"), err
    assert not out.exists()


def test_sweep_never_replaces_the_users_files_in_its_folder(manifests, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "sweep.md").write_text("# my notes on the sweep\n")
    args = ["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "optim.lr=1e-3",
            f"data.train_manifest={manifests['train']}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"asr: error: {out / 'sweep.md'}: exists and is not the table of an asr sweep; not overwritten " \
                  "(remove it or choose another path)\n"
    assert [p.name for p in out.iterdir()] == ["sweep.md"]  # nothing trained
    (out / "sweep.md").unlink()
    (out / "sweep.jsonl").write_text('{"my": "records"}\n')
    assert main(args) == 2
    assert "sweep.jsonl: exists and is not the records of an asr sweep" in capsys.readouterr().err


def test_runs_that_end_together_are_reported_one_at_a_time(manifests, tmp_path, monkeypatch):
    """With --jobs, each run is reported from its worker thread: two runs ending together printed
    their lines at once, and print's text and newline could interleave ("a: ...b: ...\\n\\n"), a
    progress line lost to the reader (and, at random, to the grid test above)."""
    import asr.sweep

    ending = threading.Barrier(4)

    def train_and_end_together(config, overrides, run, running):
        ending.wait(timeout=60)
        return run

    monkeypatch.setattr(asr.sweep, "_train", train_and_end_together)
    busy, seen_busy = [], []

    def report(run) -> None:  # a slow reader of the runs: another call during it would overlap
        seen_busy.append(len(busy))
        busy.append(run)
        time.sleep(0.05)
        busy.remove(run)

    runs = asr.sweep.sweep(str(manifests["conf"]), {"optim.lr": ["1e-3", "2e-3", "3e-3", "4e-3"]}, [0],
                           tmp_path / "sweep", jobs=4, on_run=report)
    assert len(runs) == 4 and seen_busy == [0, 0, 0, 0]


def test_interrupting_the_sweep_alone_stops_its_runs(manifests, tmp_path):
    """SIGINT to the sweep process (not to its process group, as `kill -INT` does) interrupts the
    run in progress, starts no other, and ends the sweep with status 130."""
    out = tmp_path / "sweep"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "asr.cli", "sweep", str(manifests["conf"]), "--out", str(out),
                             "--grid", "optim.lr=1e-3,3e-3", f"data.train_manifest={manifests['train']}",
                             "epochs=1000"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = out / "optim.lr=1e-3-seed0"
    deadline = time.monotonic() + 120
    while not (first / "train_log.jsonl").is_file() and time.monotonic() < deadline:  # training has begun
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "asr: interrupted" in (first / "train.out").read_text()  # the run got the interrupt
    assert not (out / "optim.lr=3e-3-seed0").exists()  # and the next one never started
    assert "optim.lr=1e-3-seed0: best dev WER" in stdout and stderr.strip().splitlines()[-1] == "asr: interrupted"


@pytest.mark.parametrize("options, message", [
    (["--seeds", "-1"], "--seeds -1: each seed must be in [0, 4294967295]"),  # a seed TrainConfig refuses
    (["--seeds", "0,4294967296"], "--seeds 0,4294967296: each seed must be in [0, 4294967295]"),
    (["--jobs", "0"], "--jobs 0: must be >= 1"),  # was taken as 1
    (["--jobs", "-2"], "--jobs -2: must be >= 1"),
    (["--seeds", "0,1,0"], "--seeds 0,1,0: seed 0 given twice"),  # ran one folder twice (at once with --jobs)
    (["--grid", "optim.lr=1e-3,3e-3,1e-3"], "--grid optim.lr: value '1e-3' given twice"),
])
def test_sweep_refuses_bad_seeds_and_jobs_before_anything(manifests, tmp_path, capsys, options, message):
    out = tmp_path / "sweep"
    assert main(["sweep", str(manifests["conf"]), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err == f"asr: error: {message}\n"
    assert not out.exists()


def test_values_that_differ_only_in_replaced_characters_get_their_own_folders():
    from asr.sweep import run_name

    names = {run_name({"name": value}, 0) for value in ("x/y", "x_y", "x y", "x:y")}
    assert len(names) == 4 and "name=x_y-seed0" in names  # a value with nothing replaced keeps its plain name


def test_sweep_refuses_to_read_or_resume_runs_made_with_another_config(manifests, tmp_path, capsys):
    """A sweep again over its --out with another setting (an override, a changed YAML) read the
    earlier runs as 'already trained' and reported their figures as the new config's."""
    from asr.sweep import sweep

    out = tmp_path / "sweep"
    args = ["sweep", str(manifests["conf"]), "--out", str(out), "--grid", "optim.lr=1e-3",
            f"data.train_manifest={manifests['train']}", "epochs=1"]
    assert main(args) == 0
    run = out / "optim.lr=1e-3-seed0"
    kept = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert main([*args, "epochs=2", "model.rnn_hidden=32"]) == 2
    assert capsys.readouterr().err == (
        f"asr: error: {run}: trained with another config (epochs=1 (now 2); model.rnn_hidden=64 (now 32)); "
        "choose another --out, or remove the run\n")
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == kept  # nothing trained, nothing replaced
    (run / "model.pt").unlink()  # a run to resume from last.pt is checked too
    with pytest.raises(ConfigError, match=r"trained with another config \(optim\.schedule='cosine' \(now 'constant'\)\)"):
        sweep(str(manifests["conf"]), {"optim.lr": ["1e-3"]}, [0], out,
              overrides=[f"data.train_manifest={manifests['train']}", "epochs=1", "optim.schedule=constant"])
    with pytest.raises(ConfigError, match=r"sweep point optim\.lr=1e-3-seed0: given twice"):
        sweep(str(manifests["conf"]), {"optim.lr": ["1e-3"]}, [0, 0], tmp_path / "other")
    assert main([*args, "--out", str(tmp_path / "./sweep/")]) == 0  # the same config: resumed, read
    assert "optim.lr=1e-3-seed0: best dev WER" in capsys.readouterr().out


def test_an_interrupt_reaches_every_started_run_and_starts_none_after(tmp_path):
    """A Ctrl-C that landed between a run's start and its listing among the running processes
    left that run unsignalled (the sweep then waited for its whole training), and a worker that had
    taken its next run started it after the interrupt. Start and listing are now one step under the
    lock the interrupt takes: a started run gets the SIGINT, and none starts after it."""
    from asr.sweep import _Processes

    processes = _Processes()
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    proc = processes.start(sleeper, tmp_path / "a" / "train.out")
    processes.interrupt()
    assert processes.wait(proc) == -signal.SIGINT  # interrupted, not slept out
    assert processes.start(sleeper, tmp_path / "b" / "train.out") is None
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # nothing made for the run never started

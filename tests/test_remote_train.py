"""tools/remote_train.py: pack, start (probe + detached run), watch, finish and join, on CPU with real audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from remote_train import RemoteError, plan_epochs  # noqa: E402

def _tool(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "remote_train.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_plan_epochs_fits_the_budget():
    steps = [{"event": "step", "run_steps": n, "elapsed_s": 20.0 + 0.5 * n, "batches": 80} for n in (5, 10, 30)]
    stop = {"event": "stop", "elapsed_s": 35.0, "dev_s": 10.0}
    plan = plan_epochs(steps + [stop], probe_wall_s=75.0, budget_s=1260.0, dev_every=5)
    assert plan["step_s"] == 0.5 and plan["dev_s"] == 10.0 and plan["startup_s"] == 30.0
    assert plan["epoch_s"] == 80 * 0.5 + 10.0 / 5
    train_s = 1260.0 - 30.0 - 10.0
    assert plan["epochs"] == int(0.9 * train_s / plan["epoch_s"]) == 26
    assert plan["max_minutes"] == round(train_s / 60, 2)
    with pytest.raises(RemoteError, match="too few steps"):
        plan_epochs(steps[:1] + [stop], 75.0, 1260.0, 5)
    with pytest.raises(RemoteError, match="did not score the dev set"):
        plan_epochs(steps + [{"event": "stop", "elapsed_s": 35.0}], 75.0, 1260.0, 5)


def test_a_run_goes_there_and_its_model_comes_back(short_utterances, tmp_path):
    entries = short_utterances
    for name in ("train-clean-5", "dev-4spk"):  # the recipe's split names; the same 4 utterances
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    env = dict(os.environ, REMOTE_TRAIN_SITE=str(tmp_path / "site"), OMP_NUM_THREADS="1")
    carried, exp, out = tmp_path / "carry", tmp_path / "exp" / "run", tmp_path / "out"

    done = _tool("pack", "--manifest", str(tmp_path / "train-clean-5.jsonl"), "--manifest",
                 str(tmp_path / "dev-4spk.jsonl"), "--dir", str(carried), "--no-wheels", env=env)
    assert done.returncode == 0, done.stderr
    assert len(list((carried / "data" / "train-clean-5").glob("*.ogg"))) == 4
    assert sf.info(next((carried / "data" / "dev-4spk").glob("*.ogg"))).subtype == "OPUS"

    done = _tool("start", "--exp", str(exp), "--dir", str(carried), "--ngpu", "0", "--minutes", "1",
                 "--probe-steps", "3", "--dev-every", "1", "preset=tiny", "precision=fp32", "threads=1",
                 "data.num_workers=0", "data.cache_audio=false", "data.max_batch_size=1", "epochs=2", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads((exp / "plan.json").read_text())
    assert plan["steps_per_epoch"] == 4 and plan["epochs"] >= 1 and plan["step_s"] > 0 and plan["dev_s"] > 0
    probe = [json.loads(line) for line in (tmp_path / "exp" / "run-probe" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in probe if e["event"] == "step"] == [1, 2, 3] and probe[-1]["event"] == "stop"
    assert "started pid" in done.stdout  # the command returned while the run goes on

    done = _tool("watch", "--exp", str(exp), "--for", "240", "--every", "1", env=env)
    assert done.returncode == 0 and "run ended" in done.stdout, done.stdout
    assert "epoch epoch=1 step=8" in done.stdout  # epochs=2 (given last) won over the plan
    assert (exp / "model.pt").is_file() and (exp / "decode" / "dev-4spk" / "result.json").is_file()

    done = _tool("finish", "--exp", str(exp), "--out", str(out), "--part-mb", "0.1", env=env)
    assert done.returncode == 0, done.stderr
    parts = sorted(p.name for p in out.glob("model.pt.part*"))
    assert len(parts) >= 2 and all((out / p).stat().st_size <= 0.1 * 2**20 for p in parts)
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "logs.tar.gz", *parts]

    joined = tmp_path / "back" / "model.pt"
    done = _tool("join", str(out), "--out", str(joined), env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back" / "remote" / "train_log.jsonl").read_text() == (exp / "train_log.jsonl").read_text()
    from asr.checkpoint import load_checkpoint

    assert load_checkpoint(joined)["metrics"]["dtype"] == "fp16"
    audio = [e["audio_filepath"] for e in entries]
    texts = [subprocess.run([sys.executable, "-m", "asr.cli", "transcribe", str(ckpt), *audio], env=env,
                            capture_output=True, text=True, check=True).stdout for ckpt in (exp / "model.pt", joined)]
    assert texts[0] == texts[1] and len(texts[0].splitlines()) == 4

    done = _tool("join", str(out), "--out", str(joined), env=env)  # the user's file stays
    assert done.returncode == 2 and "already exists" in done.stderr and "Traceback" not in done.stderr
    broken = out / parts[0]
    broken.write_bytes(b"x" + broken.read_bytes()[1:])
    done = _tool("join", str(out), "--out", str(tmp_path / "other.pt"), env=env)
    assert done.returncode == 2 and f"{broken}: SHA-256 differs" in done.stderr
    assert not (tmp_path / "other.pt").exists()


def test_start_refuses_a_second_run_in_the_same_folder(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    run = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands for a run that is going on
    try:
        (exp / "pid").write_text(f"{run.pid}\n")
        done = _tool("start", "--exp", str(exp), "--dir", str(tmp_path / "nothing"), env=dict(os.environ))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"a run is going on (pid {run.pid})" in done.stderr
    finally:
        run.kill()
        run.wait()
    done = _tool("start", "--exp", str(exp), "--dir", str(tmp_path / "nothing"), env=dict(os.environ))
    assert done.returncode == 2 and f"{tmp_path / 'nothing' / 'data'}: missing" in done.stderr

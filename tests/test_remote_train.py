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
    assert "gpu_peak_gb" not in plan  # a probe on the CPU
    assert plan_epochs(steps + [stop | {"gpu_peak_gb": 5.7}], 75.0, 1260.0, 5)["gpu_peak_gb"] == 5.7
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


def test_bad_values_and_missing_files_are_one_line_before_any_work(tmp_path):
    """Each mistake is `remote_train: error: ...` and status 2, before a probe, a wait or a write."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "dev.jsonl").write_text("{}\n")
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "carry" / "data").mkdir(parents=True)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "pid").write_text("0\n")  # 0 would signal this process's own group
    (tmp_path / "mine-probe").mkdir()
    (tmp_path / "mine-probe" / "notes.txt").write_text("mine")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_text("a checkpoint of a run started otherwise")
    start = ["start", "--dir", str(tmp_path / "carry"), "--exp"]
    new_exp = str(tmp_path / "new")
    cases = [
        (["pack", "--manifest", str(tmp_path / "none.jsonl")], f"{tmp_path / 'none.jsonl'}: no such manifest"),
        (["pack", "--manifest", str(tmp_path / "a")], f"{tmp_path / 'a'}: a folder, not a manifest"),
        (["pack", "--manifest", str(tmp_path / "a" / "dev.jsonl"), "--manifest", str(tmp_path / "b" / "dev.jsonl"),
          "--dir", str(tmp_path / "carry")],
         f"--manifest {tmp_path / 'a' / 'dev.jsonl'} and {tmp_path / 'b' / 'dev.jsonl'}: both would be packed as "
         f"{tmp_path / 'carry' / 'data' / 'dev.jsonl'} (rename one)"),
        (["pack", "--manifest", str(tmp_path / "a" / "dev.jsonl"), "--dir", str(tmp_path / "afile" / "gpu")],
         f"{tmp_path / 'afile'}: exists and is not a folder; nothing packed in {tmp_path / 'afile' / 'gpu'}"),
        ([*start, new_exp, "--minutes", "0"], "--minutes 0: must be a positive number of minutes"),
        ([*start, new_exp, "--minutes", "nan"], "--minutes nan: must be a positive number of minutes"),
        ([*start, new_exp, "--probe-steps", "1"], "--probe-steps 1: must be >= 2 (two logged steps time one)"),
        ([*start, new_exp, "--dev-every", "0"], "--dev-every 0: must be >= 1"),  # was a ZeroDivisionError after the probe
        ([*start, new_exp, "--ngpu", "-1"], "--ngpu -1: must be >= 0 (0: CPU)"),
        ([*start, new_exp, "--conf", "nope"],
         f"--conf nope: no {REPO / 'recipes' / 'mini_librispeech' / 'conf' / 'nope.yaml'} (there: medium, medium_aug)"),
        ([*start, new_exp, "--recipe", str(tmp_path / "run.sh")], f"--recipe {tmp_path / 'run.sh'}: no such file"),
        ([*start, new_exp, "epochs"], "'epochs': not key=value (an override for `asr train`, e.g. data.max_batch_s=240)"),
        ([*start, str(tmp_path / "afile" / "exp")],
         f"{tmp_path / 'afile'}: exists and is not a folder; no run started (choose another --exp)"),
        ([*start, str(tmp_path / "exp")], f"{tmp_path / 'exp' / 'pid'}: '0' is not a process id; remove it if no run is going on"),
        ([*start, str(tmp_path / "mine")],
         f"{tmp_path / 'mine-probe'}: exists and is not a probe of remote_train; not removed (remove it or choose another --exp)"),
        ([*start, str(tmp_path / "old")], f"{tmp_path / 'old' / 'plan.json'}: missing, beside a checkpoint of a run that "
                                          "`start` did not plan; choose another --exp"),
        (["watch", "--exp", new_exp], f"{tmp_path / 'new' / 'pid'}: missing; no run was started in {new_exp} (`start` one)"),
        (["watch", "--exp", new_exp, "--every", "0"], "--every 0: must be a positive number of seconds"),
        (["watch", "--exp", new_exp, "--for", "-1"], "--for -1: must be a number of seconds >= 0"),
        (["finish", "--exp", new_exp, "--out", str(tmp_path / "out")], f"{new_exp}: no such folder; no run to finish"),
        (["finish", "--exp", str(tmp_path / "old"), "--out", str(tmp_path / "out"), "--part-mb", "0"],
         "--part-mb 0: must be a positive number of MiB (a byte at least)"),  # was a ValueError after the export
        (["finish", "--exp", str(tmp_path / "old"), "--out", str(tmp_path / "afile" / "out")],
         f"{tmp_path / 'afile'}: exists and is not a folder; nothing written in {tmp_path / 'afile' / 'out'}"),
        (["join", str(tmp_path / "a"), "--out", str(tmp_path / "afile")],
         f"{tmp_path / 'afile'}: already exists; not overwritten (remove it or choose another --out)"),
    ]
    for args, message in cases:
        done = _tool(*args, env=dict(os.environ))
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"remote_train: error: {message}\n"), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "afile", "b", "carry", "exp", "mine-probe", "old"]
    assert list((tmp_path / "carry" / "data").iterdir()) == [] and (tmp_path / "afile").read_text() == "mine"
    assert (tmp_path / "mine-probe" / "notes.txt").read_text() == "mine"


def test_pack_leaves_out_what_opus_copy_cannot_read_and_names_a_failed_download(short_utterances, tmp_path):
    lines = [short_utterances[0], {**short_utterances[1], "audio_filepath": str(tmp_path / "gone.flac")}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    carried = tmp_path / "carry"
    done = _tool("pack", "--manifest", str(tmp_path / "train.jsonl"), "--dir", str(carried), "--no-wheels",
                 env=dict(os.environ))
    assert done.returncode == 0 and "gone.flac" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len((carried / "data" / "train.jsonl").read_text().splitlines()) == 1  # was "the Opus copy failed"
    done = _tool("pack", "--manifest", str(tmp_path / "train.jsonl"), "--dir", str(carried),
                 env=dict(os.environ, PIP_NO_INDEX="1"))  # pip finds nothing, as offline
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (f"remote_train: error: {carried / 'wheels'}: `pip download` failed (ERROR: No "
                                            "matching distribution found for soundfile==0.14.0); --no-wheels packs without them")


def _finished_folder(folder: Path, checkpoint: bytes, part_bytes: int) -> None:
    """What `finish` writes: model.pt in parts, logs.tar.gz and SHA256SUMS."""
    import hashlib
    import tarfile

    folder.mkdir()
    sums = {"model.pt": hashlib.sha256(checkpoint).hexdigest()}
    for i in range(0, len(checkpoint), part_bytes):
        name = f"model.pt.part{i // part_bytes:02d}"
        (folder / name).write_bytes(checkpoint[i:i + part_bytes])
        sums[name] = hashlib.sha256(checkpoint[i:i + part_bytes]).hexdigest()
    (folder / "train_log.jsonl").write_text('{"event": "stop"}\n')
    with tarfile.open(folder / "logs.tar.gz", "w:gz") as tar:
        tar.add(folder / "train_log.jsonl", arcname="train_log.jsonl")
    (folder / "train_log.jsonl").unlink()
    sums["logs.tar.gz"] = hashlib.sha256((folder / "logs.tar.gz").read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))


def test_join_orders_a_hundred_parts_and_refuses_a_bad_sums_file(tmp_path):
    from asr.checkpoint import checkpoint_payload, save_checkpoint
    from asr.features import FeatureConfig, FeatureExtractor
    from asr.model import DeepSpeech2, load_preset
    from asr.recognizer import Recognizer
    from asr.tokenizer import CharTokenizer

    features, tokenizer = FeatureExtractor(FeatureConfig()), CharTokenizer()
    model = DeepSpeech2(load_preset("tiny"), num_features=features.num_features, vocab_size=tokenizer.vocab_size)
    save_checkpoint(checkpoint_payload(Recognizer(features, model, tokenizer)), tmp_path / "model.pt")
    checkpoint = (tmp_path / "model.pt").read_bytes()
    _finished_folder(tmp_path / "parts", checkpoint, len(checkpoint) // 105 + 1)
    assert (tmp_path / "parts" / "model.pt.part100").is_file()  # sorted as text, part100 came before part11
    done = _tool("join", str(tmp_path / "parts"), "--out", str(tmp_path / "back" / "model.pt"), env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back" / "model.pt").read_bytes() == checkpoint
    assert (tmp_path / "back" / "remote" / "train_log.jsonl").read_text() == '{"event": "stop"}\n'

    _finished_folder(tmp_path / "junk", b"not a checkpoint" * 100, 1000)  # whole, but no checkpoint
    sums = tmp_path / "parts" / "SHA256SUMS"
    listed = sums.read_text().splitlines()
    cases = [
        ("junk", None, f"{tmp_path / 'junk'}: the joined model.pt is not a readable checkpoint (not the zip archive"),
        ("parts", "\n".join(listed[:3] + ["model.pt.part03"] + listed[4:]) + "\n",
         f"{sums}:4: not a line of SHA256SUMS (a SHA-256 in hex, then a file name)"),  # was a ValueError
        ("parts", "\n".join(listed[1:]) + "\n",
         f"{sums}: lists no model.pt; is {tmp_path / 'parts'} the folder `finish` wrote?"),  # was a KeyError
    ]
    for folder, text, message in cases:
        if text is not None:
            sums.write_text(text)
        done = _tool("join", str(tmp_path / folder), "--out", str(tmp_path / "out.pt"), env=dict(os.environ))
        assert done.returncode == 2 and done.stderr.startswith(f"remote_train: error: {message}"), done.stderr
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "junk", "model.pt", "parts"]  # no out.pt, no temporary


def test_watch_waits_for_a_line_being_written_and_names_a_broken_one(tmp_path):
    ended = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()  # its group is gone
    (tmp_path / "pid").write_text(f"{ended}\n")
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"event": "epoch", "epoch": 1, "step": 4, "elapsed_s": 9.5}\n{"event": "st')
    done = _tool("watch", "--exp", str(tmp_path), "--for", "0", env=dict(os.environ))
    assert done.returncode == 0 and done.stdout.startswith("epoch epoch=1 step=4 elapsed_s=10\nrun ended"), done.stdout
    log.write_text('{"event": "st\n{"event": "epoch", "epoch": 1, "step": 4, "elapsed_s": 9.5}\n')
    done = _tool("watch", "--exp", str(tmp_path), "--for", "0", env=dict(os.environ))
    assert (done.returncode, done.stderr) == (2, f"remote_train: error: {log}:1: not an event of a training log\n")


def test_finish_names_a_failed_export_in_one_line(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "best.pt").write_text("not a checkpoint")
    done = _tool("finish", "--exp", str(exp), "--out", str(tmp_path / "out"), "--wait", "0",
                 env=dict(os.environ, REMOTE_TRAIN_SITE=str(tmp_path / "site")))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"remote_train: error: {exp / 'best.pt'}: `asr export` failed "
                                                   f"(asr: error: {exp / 'best.pt'}: not a readable checkpoint")
    assert list((tmp_path / "out").iterdir()) == []  # an empty folder, which `finish` takes again


def test_runs_where_torch_and_the_carried_packages_are_missing(tmp_path):
    """`start` runs on the GPU machine before the wheels are installed: remote_train imports none of them."""
    hide = "import sys; sys.modules.update(dict.fromkeys(['torch', 'numpy', 'soundfile', 'jiwer', 'rapidfuzz']))"
    run = f"{hide}; import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", run, str(REPO / "tools" / "remote_train.py"), "watch", "--exp",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        2, f"remote_train: error: {tmp_path / 'pid'}: missing; no run was started in {tmp_path} (`start` one)\n")

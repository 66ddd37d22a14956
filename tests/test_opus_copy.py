"""tools/opus_copy.py: Opus copies of a manifest's audio; bad items skipped, the user's files kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _opus_copy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "opus_copy.py"), "--jobs", "1", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def _manifest(path: Path, audio: list[Path]) -> Path:
    path.write_text("".join(json.dumps({"audio_filepath": str(a), "duration": 0.3, "text": f"word {i}"}) + "\n"
                            for i, a in enumerate(audio)))
    return path


def test_damaged_and_missing_audio_are_skipped_and_the_rest_copied(shared_data, tmp_path):
    wavs = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[:2]
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(wavs[0].read_bytes()[:30])
    manifest = _manifest(tmp_path / "in.jsonl", [wavs[0], damaged, tmp_path / "missing.wav", wavs[1]])
    run = _opus_copy(str(manifest), "copies", cwd=tmp_path)
    assert run.returncode == 1, run.stderr  # some were skipped
    assert "Traceback" not in run.stderr
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2 and any("damaged.wav" in e for e in errors) and any("in.jsonl:3" in e for e in errors)
    entries = [json.loads(line) for line in (tmp_path / "copies.jsonl").read_text().splitlines()]
    assert [e["text"] for e in entries] == ["word 0", "word 3"]
    for entry in entries:
        info = sf.info(tmp_path / entry["audio_filepath"])
        assert info.subtype == "OPUS" and abs(info.duration - entry["duration"]) < 1e-3
    assert _opus_copy(str(manifest), "copies", cwd=tmp_path).returncode == 1  # its own outputs: written again


def test_user_files_and_bad_options_are_refused_in_one_line(shared_data, tmp_path):
    wav = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[0]
    manifest = _manifest(tmp_path / "train.jsonl", [wav])
    before = manifest.read_text()
    (tmp_path / "notes.jsonl").write_text('{"mine": 1}\n')
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "000000.ogg").write_text("not audio")
    (tmp_path / "afile").write_text("x")
    cases = [
        ([str(manifest), "train"], "is the input manifest"),  # train.jsonl would be replaced
        ([str(manifest), "notes"], "is not a manifest of Opus copies"),
        ([str(manifest), "taken"], "is not an Ogg file"),
        ([str(manifest), "afile/sub"], "is not a folder"),
        ([str(tmp_path / "missing.jsonl"), "out"], "cannot read manifest"),
        ([str(tmp_path / "afile"), "out"], "afile"),
        ([str(manifest), "out", "--compression-level", "2"], "--compression-level"),
        ([str(manifest), "out", "--jobs", "0"], "--jobs 0"),
    ]
    for args, cause in cases:
        run = _opus_copy(*args, cwd=tmp_path)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and cause in lines[-1] and "Traceback" not in run.stderr, (args, run.stderr)
    assert manifest.read_text() == before and (tmp_path / "notes.jsonl").read_text() == '{"mine": 1}\n'
    assert (tmp_path / "taken" / "000000.ogg").read_text() == "not audio" and not (tmp_path / "out").exists()  # --jobs 0 ran nothing


def test_ctrl_c_while_copying_is_one_line_and_writes_no_manifest(shared_data, tmp_path):
    """Ctrl-C in a terminal reaches the tool and its encoding processes (SIGINT to the process
    group): `opus_copy: interrupted`, status 130, no traceback of a worker, no manifest, and no
    half-written copy (each is written under a temporary name, then renamed). Most items are a
    damaged file, done at once, so that the workers spend much of their time between items, where
    a Ctrl-C that reached them printed a worker's traceback (9 runs of 10 before they ignored it)."""
    wavs = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[:300]
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(b"RIFF")
    manifest = _manifest(tmp_path / "in.jsonl", [a for wav in wavs for a in [wav] + [damaged] * 50])
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "opus_copy.py"), str(manifest), "copies", "--jobs", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "copies").glob("*.ogg")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # copying has begun
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, stdout, stderr) == (130, "", "opus_copy: interrupted\n")
    copies = list((tmp_path / "copies").iterdir())
    assert 0 < len(copies) < len(wavs) and not (tmp_path / "copies.jsonl").exists()
    assert all(c.suffix == ".ogg" and sf.info(c).subtype == "OPUS" for c in copies)

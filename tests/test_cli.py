"""The ``asr`` command line end to end, on a tiny model trained once for this module."""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.cli import main
from conftest import SHORT_UTTS, dev4spk_flac

REPO = Path(__file__).resolve().parents[1]
UTTS = SHORT_UTTS


ASR = [sys.executable, "-m", "asr.cli"]  # the real console entry in a fresh interpreter...
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))  # ...on one CPU thread


def _asr(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ASR, *args], capture_output=True, text=True, errors="surrogateescape",
                          env=ENV, cwd=cwd or REPO, timeout=120, input=input)


_flac = dev4spk_flac


@pytest.fixture(scope="module")
def work(shared_data: Path, short_utterances: list[dict], tmp_path_factory) -> dict[str, Path]:
    """A manifest of 4 real utterances, a tiny model trained on them with ``asr train``, test audio."""
    tmp = tmp_path_factory.mktemp("cli")
    entries = short_utterances
    manifest = tmp / "dev.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    conf = tmp / "conf.yaml"
    conf.write_text(f"preset: tiny\ndata:\n  train_manifest: {manifest}\n  max_batch_size: 4\n"
                    "epochs: 2\noptim:\n  lr: 3e-3\n  warmup_steps: 1\n")
    run_dir = tmp / "run"
    rc = main(["train", str(conf), f"out_dir={run_dir}", "device=cpu", "threads=1", "features.kind=fbank"])
    assert rc == 0 and (run_dir / "model.pt").is_file()

    audio = tmp / "audio"
    audio.mkdir()
    wave = load_audio(entries[0]["audio_filepath"])  # (S,) at 16 kHz
    sf.write(audio / "a.ogg", wave, 16000, format="OGG", subtype="VORBIS")
    sf.write(audio / "a.mp3", wave, 16000, format="MP3", subtype="MPEG_LAYER_III")
    shutil.copy(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", audio / "b.wav")  # 8 kHz
    (audio / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    return {"manifest": manifest, "conf": conf, "run": run_dir, "model": run_dir / "model.pt",
            "flac": Path(entries[0]["audio_filepath"]), "audio": audio, "tmp": tmp}


def _one_line_error(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("asr: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------ help, presets
def test_help_lists_exactly_the_commands():
    result = _asr("--help")
    assert result.returncode == 0
    listed = re.findall(r"^    ([\w-]+)\s", result.stdout, flags=re.M)
    assert listed == ["prepare", "download", "train", "sweep", "transcribe", "stream", "evaluate", "tune-lm", "build-lm", "average",
                      "export", "compare", "presets"]


def test_python_m_asr_is_the_asr_command():
    result = subprocess.run([sys.executable, "-m", "asr", "--help"], capture_output=True, text=True, env=ENV,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == _asr("--help").stdout
    result = subprocess.run([sys.executable, "-m", "asr"], capture_output=True, text=True, env=ENV, cwd=REPO,
                            timeout=120)
    assert result.returncode == 2 and "COMMAND" in result.stderr


@pytest.mark.parametrize("args, name", [
    (["evaluate", "", "dev.jsonl"], "checkpoint"),
    (["evaluate", "model.pt", "dev.jsonl", "--results-json", ""], "--results-json"),  # was: no results, status 0
    (["transcribe", "model.pt", "a.wav", "--srt", ""], "--srt"),  # was: no subtitles, status 0
    (["tune-lm", "model.pt", "dev.jsonl", "--lm", ""], "--lm"),  # was: '.: a folder, not a language model file'
    (["prepare", "wsj", "--wsj0", "", "--out", "x"], "--wsj0"),
    (["average", "a.pt", "", "--out", "x.pt"], "CKPT"),
])
def test_an_empty_path_is_refused_by_name(args, name, tmp_path):
    """An unset shell variable (`--srt "$DIR"`) was taken for "not given" or for the current folder."""
    result = subprocess.run([sys.executable, "-m", "asr", *args], capture_output=True, text=True, env=ENV,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr == (
        f"asr {' '.join(args[:2] if args[0] == 'prepare' else args[:1])}: error: argument {name}: an empty path "
        f"(see asr {' '.join(args[:2] if args[0] == 'prepare' else args[:1])} --help)\n"), result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_usage_errors_and_no_command_are_one_line_with_status_2():
    result = _asr("transcribe", "--nbest")
    assert result.returncode == 2 and result.stderr == (
        "asr transcribe: error: argument --nbest: expected one argument (see asr transcribe --help)\n")
    result = _asr()
    assert result.returncode == 2 and result.stdout == "" and "COMMAND" in result.stderr


def test_a_folder_stands_for_the_audio_files_under_it(work, tmp_path):
    """`asr transcribe CKPT recordings/` was 'skipped recordings: is a directory, not an audio file'."""
    folder = tmp_path / "recordings"
    (folder / "day 2").mkdir(parents=True)
    (folder / ".trash").mkdir()
    shutil.copy(work["audio"] / "b.wav", folder / "B.WAV")
    shutil.copy(work["audio"] / "a.ogg", folder / "day 2" / "a.ogg")
    shutil.copy(work["audio"] / "b.wav", folder / ".trash" / "old.wav")  # hidden: left out
    shutil.copy(work["audio"] / "b.wav", folder / ".b.wav")
    (folder / "notes.txt").write_text("not audio\n")
    (tmp_path / "empty").mkdir()
    result = _asr("transcribe", str(work["model"]), str(folder), str(tmp_path / "empty"), str(work["audio"] / "b.wav"))
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(folder / "B.WAV"), str(folder / "day 2" / "a.ogg"), str(work["audio"] / "b.wav")]
    assert result.stderr.splitlines() == [
        f"asr: skipped {tmp_path / 'empty'}: a folder without audio files (.wav .flac .ogg .oga .opus .mp3 .sph .wv1 "
        ".wv2 .aif .aiff .aifc .au .snd .caf .w64 .rf64)", "asr: 1 of 4 files could not be read"]
    assert result.returncode == 1


def test_srt_never_replaces_a_subtitle_file(work, tmp_path):
    """Subtitles a user has corrected by hand survive a second run: that file is left alone, the
    transcript is still printed, the others are written, and the exit status says something was kept."""
    srt = tmp_path / "srt"
    srt.mkdir()
    (srt / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmy corrected words\n")
    audio = work["audio"]
    nested = tmp_path / "nested"
    nested.mkdir()
    shutil.copy(audio / "a.ogg", nested / "a.ogg")  # same stem as a.ogg: written as a_1.srt
    result = _asr("transcribe", str(work["model"]), str(audio / "a.ogg"), str(nested / "a.ogg"), str(audio / "b.wav"),
                  "--srt", str(srt))
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(audio / "a.ogg"), str(nested / "a.ogg"), str(audio / "b.wav")]
    assert result.stderr.splitlines() == [
        f"asr: {srt / 'a.srt'}: exists; not overwritten (remove it or choose another --srt folder)",
        "asr: 1 subtitle files not written: they exist already"]
    assert (srt / "a.srt").read_text().endswith("my corrected words\n")
    assert sorted(p.name for p in srt.iterdir()) == ["a.srt", "a_1.srt", "b.srt"]


def test_srt_of_a_file_whose_name_is_near_the_systems_limit(work, tmp_path):
    """A 250-byte audio file name (the limit is 255) gives a 249-byte .srt name, but the temporary
    file it is written through was '.<name>.<pid>-<n>.tmp', too long: the whole batch stopped there
    ('cannot write a file there (File name too long)', status 2), the files after it untranscribed."""
    long = tmp_path / ("a" * 245 + ".flac")
    shutil.copy(work["flac"], long)
    srt = tmp_path / "srt"
    result = _asr("transcribe", str(work["model"]), str(long), str(work["audio"] / "b.wav"), "--srt", str(srt))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(long), str(work["audio"] / "b.wav")]
    assert sorted(p.name for p in srt.iterdir()) == sorted([long.stem + ".srt", "b.srt"])  # and no temporary file


def test_srt_names_are_cut_to_the_systems_limit(work, tmp_path):
    """Two 250-byte stems alike need '<stem>_1.srt' (256 bytes), a 252-byte stem of a '.au' file
    '<stem>.srt' (256 bytes): each stopped the whole batch ('File name too long', status 2). The
    stem is now cut to keep the name within 255 bytes, and every file gets its subtitles."""
    wave, rate = sf.read(work["audio"] / "b.wav")
    stem = "a" * 250
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / f"{stem}.wav", wave, rate)
    au = tmp_path / ("b" * 252 + ".au")
    sf.write(au, wave, rate, format="AU", subtype="PCM_16")
    srt = tmp_path / "srt"
    inputs = [str(tmp_path / "x" / f"{stem}.wav"), str(tmp_path / "y" / f"{stem}.wav"), str(au), str(work["flac"])]
    result = _asr("transcribe", str(work["model"]), *inputs, "--srt", str(srt))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == inputs
    assert sorted(p.name for p in srt.iterdir()) == sorted(
        [f"{stem}.srt", f"{stem[:-1]}_1.srt", "b" * 251 + ".srt", work["flac"].stem + ".srt"])


def test_output_the_system_refuses_is_one_line(work, tmp_path, capsys):
    flac = str(work["flac"])
    result = _asr("transcribe", str(work["model"]), flac, "--srt", str(work["model"]))
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, f"{work['model']}: exists and is not a folder (--srt names the folder for the")
    # below a file, or where the system makes no folder: refused before the model is read (it is missing here)
    refused = {str(work["model"] / "srt"): f"{work['model']}: exists and is not a folder (--srt"}
    if Path("/proc/self").is_dir():
        refused["/proc/none/srt"] = "/proc: cannot write files there (No such file or directory) (--srt"
    for srt, error in refused.items():
        assert main(["transcribe", str(tmp_path / "missing.pt"), flac, "--srt", srt]) == 2
        assert capsys.readouterr().err.startswith(f"asr: error: {error}")
    result = _asr("export", str(work["model"]), "--out", str(work["model"] / "x.pt"))  # below a file
    _one_line_error(result.stderr, "model.pt")
    if Path("/proc/self").is_dir():  # a folder where the system refuses new files (a checkpoint once gave a traceback)
        result = _asr("average", str(work["model"]), str(work["model"]), "--out", "/proc/average.pt")
        assert result.returncode == 2 and result.stdout == ""
        _one_line_error(result.stderr, "/proc: cannot write files there (No such file or directory)")
        text = tmp_path / "text.txt"
        text.write_text("one two\n")
        refused_out = {  # both before the work: export before the checkpoint is read, build-lm before counting
            ("export", str(work["model"])): "/proc: cannot write files there (No such file or directory)",
            ("build-lm", str(text)):
                "/proc: cannot write files there (No such file or directory); nothing written at /proc/out.arpa"}
        for command, error in refused_out.items():
            assert main([*command, "--out", "/proc/out.arpa"]) == 2, command
            assert capsys.readouterr().err.splitlines()[-1] == f"asr: error: {error}"
        assert main(["export", str(work["model"]), "--out", "/proc/none/x.pt"]) == 2  # was "[Errno 2] ...: '/proc/none'"
        assert capsys.readouterr().err == "asr: error: /proc: cannot write files there (No such file or directory)\n"
    if Path("/dev/full").exists():  # a full disk
        with open("/dev/full", "w") as full:
            result = subprocess.run([*ASR, "transcribe", str(work["model"]), flac],
                                    stdout=full, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
        assert result.returncode == 2
        _one_line_error(result.stderr, "No space left on device")
    # the reader of the output goes away: no traceback
    proc = subprocess.Popen([*ASR, "transcribe", str(work["model"]), *[flac] * 400],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # a one-page pipe: the 400 lines (> 20 KB) cannot all fit in it
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)  # before we close it, even on a busy machine
    proc.stdout.read(10)
    proc.stdout.close()  # as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == ""


def test_checkpoint_writes_the_system_refuses_are_one_line(work, tmp_path):
    """export and average onto a full disk ended in a traceback of torch.save's RuntimeError
    ('unexpected pos 3049152 vs 3049040', status 1), which does not say why. A file size limit
    (RLIMIT_FSIZE: the system refuses the write as a full disk does, with EFBIG) stands in for the disk."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    assert work["model"].stat().st_size > 4 * 64_000
    for command in (["export", str(work["model"])], ["average", str(work["model"])]):
        out = tmp_path / f"{command[0]}.pt"
        result = subprocess.run([*ASR, *command, "--out", str(out)], capture_output=True, text=True, env=ENV,
                                cwd=REPO, timeout=120, preexec_fn=limited)
        assert result.returncode == 2 and result.stdout == "", result.stderr
        _one_line_error(result.stderr, f"{out}: File too large")
        assert list(tmp_path.iterdir()) == []  # the partial file is removed


def test_files_and_folders_the_system_closes_to_us_are_one_line(work, capsys, unprivileged):
    """Unreadable audio was skipped as "corrupt or truncated header (System error)", an unreadable
    checkpoint called "not the zip archive torch.save writes"; read-only output folders are refused
    before the work, and nothing is made in them."""
    folder, as_user = unprivileged
    model, closed_model = folder / "model.pt", folder / "closed.pt"
    for path in (model, closed_model):
        shutil.copy(work["model"], path)
    good, closed_audio = folder / "good.wav", folder / "closed.wav"
    for path in (good, closed_audio):
        shutil.copy(work["audio"] / "b.wav", path)
    manifest, closed_manifest = folder / "dev.jsonl", folder / "closed.jsonl"
    for path in (manifest, closed_manifest):
        shutil.copy(work["manifest"], path)
    conf = folder / "conf.yaml"
    shutil.copy(work["conf"], conf)
    read_only = folder / "read-only"
    read_only.mkdir()
    for path in (model, good, manifest, conf):
        path.chmod(0o644)
    for path in (closed_model, closed_audio, closed_manifest):
        path.chmod(0)
    read_only.chmod(0o555)
    assert main(["evaluate", str(model), str(manifest), "--out", str(folder / "warm-up")]) == 0  # imports
    capsys.readouterr()
    refused = {
        ("transcribe", str(closed_model), str(good)): f"{closed_model}: cannot read the checkpoint (Permission denied)",
        ("average", str(model), str(closed_model), "--out", str(folder / "avg.pt")):
            f"{closed_model}: cannot read the checkpoint (Permission denied)",
        ("evaluate", str(model), str(closed_manifest), "--out", str(folder / "report")):
            f"{closed_manifest}: cannot read manifest: Permission denied",
        ("evaluate", str(model), str(manifest), "--out", str(read_only / "report")):
            f"{read_only}: cannot write files there (Permission denied)",
        ("export", str(model), "--out", str(read_only / "small.pt")):
            f"{read_only}: cannot write files there (Permission denied)",
        ("train", str(conf), f"out_dir={read_only / 'run'}", f"data.train_manifest={manifest}", "threads=1"):
            f"{read_only}: cannot write files there (Permission denied)",
    }
    with as_user():
        assert main(["transcribe", str(model), str(closed_audio), str(good)]) == 1
        out, err = capsys.readouterr()
        assert out.startswith(f"{good}\t") and out.count("\n") == 1
        assert err.splitlines() == [f"asr: skipped {closed_audio}: cannot read file (Permission denied)",
                                    "asr: 1 of 2 files could not be read"]
        for command, error in refused.items():
            assert main(list(command)) == 2, command
            _one_line_error(capsys.readouterr().err, error)
    assert not any(read_only.iterdir())
    assert not (folder / "avg.pt").exists() and not (folder / "report").exists()


def test_ctrl_c_outside_the_command_is_one_line_too(monkeypatch, capsys):
    """A Ctrl-C that lands outside the command itself (while the arguments are read, or just after
    the command's last line) is `asr: interrupted` and status 130, not a traceback. The parser's
    build stands in for that moment: a real Ctrl-C there cannot be timed."""
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr("asr.cli.build_parser", interrupted)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "asr: interrupted\n"


def test_short_output_the_system_refuses_is_one_line_too():
    """A command whose whole output waits in Python's buffer until it ends (presets, compare,
    download --list) met a full disk or a closed pipe only in the interpreter's exit: two lines of
    'Exception ignored' and status 120. The test suite's own PYTHONUNBUFFERED=1 hid it."""
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    commands = [["presets"], ["compare"], ["download", "--list"]]
    for command in commands:
        if Path("/dev/full").exists():  # a full disk
            with open("/dev/full", "w") as full:
                result = subprocess.run([*ASR, *command], stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                                        timeout=120)
            assert result.returncode == 2, (command, result.stderr)
            assert result.stderr == "asr: error: standard output: No space left on device\n", command
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written (`asr presets | true`)
        try:
            result = subprocess.run([*ASR, *command], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env,
                                    timeout=120)
        finally:
            os.close(write_end)
        assert result.returncode == 1 and result.stderr == "", (command, result.stderr)


def test_presets_with_parameter_counts(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["preset", "parameters"]
    counts = {name: int(count.replace(",", "")) for name, count in (line.split() for line in lines[1:])}
    assert sorted(counts) == ["ds1", "ds2", "medium", "small", "tiny"]
    assert counts["tiny"] == 145_769  # as documented in asr/presets/tiny.yaml
    assert counts["tiny"] < counts["small"] < counts["medium"] < counts["ds2"]


def test_presets_refuse_sizes_no_model_can_have(capsys):
    for option, value, cause in (("--features", "0", "must be >= 1"), ("--features", "-5", "must be >= 1"),
                                 ("--vocab", "-1", "must be >= 2"), ("--vocab", "1", "must be >= 2")):
        assert main(["presets", option, value]) == 2
        _one_line_error(capsys.readouterr().err, f"{option} {value}: {cause}")
    result = _asr("presets", "--features", "0")  # the real process: a ValueError traceback once
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "--features 0: must be >= 1")


# ---------------------------------------------------------------------------------- transcribe
def test_transcribe_good_and_bad_files(work):
    missing = work["audio"] / "missing.wav"
    corrupt = work["audio"] / "corrupt.wav"
    good = [str(work["flac"]), str(work["audio"] / "b.wav")]
    result = _asr("transcribe", str(work["model"]), good[0], good[1], str(missing), str(corrupt))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in out] == good
    assert all(line.count("\t") == 1 for line in out)
    err = result.stderr.strip().splitlines()
    missing_lines = [line for line in err if "missing.wav" in line]
    corrupt_lines = [line for line in err if "corrupt.wav" in line]
    assert len(missing_lines) == 1 and len(corrupt_lines) == 1, err
    assert "2 of 4 files could not be read" in result.stderr


def test_transcribe_dash_is_not_standard_input_and_a_file_named_dash_is_read(work, tmp_path):
    """'cat x.flac | asr transcribe CKPT -' said 'skipped -: no such file' (status 1), as if a name
    were mistyped; and a file named '-' was read by libsndfile from standard input ('unknown or
    unsupported audio format'), not from the file."""
    result = _asr("transcribe", str(work["model"]), "-", cwd=tmp_path, input="")
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "-: transcribe reads named files, not standard input", "asr stream CKPT -",
                    "--files-from -")
    shutil.copy(work["flac"], tmp_path / "-")
    expected = _asr("transcribe", str(work["model"]), str(work["flac"])).stdout.split("\t")[1]
    result = _asr("transcribe", str(work["model"]), "-", cwd=tmp_path, input="")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"-\t{expected}"


def test_float_samples_too_large_for_finite_features_are_skipped_by_name(work, shared_data, tmp_path, capsys,
                                                                        caplog):
    """A real digit x1e30 as a float WAV makes NaN features: it gave an empty transcript with status 0,
    only the loud-float warning saying something was wrong; whole or cut into pieces, it is skipped."""
    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    digit, rate = sf.read(shared_data / "fsdd" / "recordings" / "3_theo_5.wav", dtype="float32")  # 8 kHz
    loud, long = tmp_path / "loud.wav", tmp_path / "long_loud.wav"
    sf.write(loud, digit * np.float32(1e30), rate, subtype="FLOAT")
    sf.write(long, np.tile(digit * np.float32(1e30), 4), rate, subtype="FLOAT")  # cut into pieces below
    good = str(work["audio"] / "b.wav")
    assert main(["transcribe", str(work["model"]), good, str(loud), str(long), good, "--max-segment-s", "1"]) == 1
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [good, good]
    for path in (loud, long):  # refused as they are read (asr.audio.MAX_USABLE_PEAK), by every command
        assert re.search(rf"^asr: skipped {re.escape(str(path))}: float samples peak at [0-9.]+e\+28, 567 dB above "
                         r"full scale \(1.0\): far too loud to be audio, its features would not be finite", err, re.M), err
    assert "asr: 2 of 4 files could not be read" in err
    with pytest.raises(AudioError, match=r"loud.wav: float samples peak at .* not be finite"):
        Transcriber.from_checkpoint(work["model"]).transcribe(loud)
    with pytest.raises(AudioError, match=r"<array 0>: samples up to .* make features that are not finite"):
        Transcriber.from_checkpoint(work["model"]).transcribe(digit * np.float32(1e30), sample_rate=rate)  # not read
    manifest = tmp_path / "loud.jsonl"  # the loud digit beside a real utterance: evaluate skips it by name
    good_entry = json.loads(work["manifest"].read_text().splitlines()[0])
    manifest.write_text(json.dumps(good_entry) + "\n" + json.dumps(
        {"audio_filepath": str(loud), "duration": len(digit) / rate, "text": "three"}) + "\n")
    assert main(["evaluate", str(work["model"]), str(manifest)]) == 1  # some of the set skipped
    assert "1 of 2 utterances skipped (bad lines or unreadable audio, named above)" in capsys.readouterr().err
    assert f"{loud}: float samples peak at" in caplog.text
    sf.write(tmp_path / "loud_but_finite.wav", digit * np.float32(1e10), rate, subtype="FLOAT")  # warned of only
    assert main(["transcribe", str(work["model"]), str(tmp_path / "loud_but_finite.wav")]) == 0


def test_damaged_mp3_files_are_one_line_each_without_the_decoders_own_notes(work, shared_data, tmp_path):
    """libmpg123 printed its own lines beside ours ("Note: Illegal Audio-MPEG-Header ...",
    "[src/libmpg123/layer3.c:...] error: dequantization failed!")."""
    wave, rate = sf.read(shared_data / "LibriSpeech/dev-4spk/8226/274371/8226-274371-0020.flac", dtype="float32")
    sf.write(tmp_path / "utt.mp3", wave, rate, format="MP3", subtype="MPEG_LAYER_III")
    mp3 = (tmp_path / "utt.mp3").read_bytes()
    zeroed, flipped = tmp_path / "zeroed.mp3", tmp_path / "flipped.mp3"
    zeroed.write_bytes(mp3[:1000] + bytes(3000) + mp3[4000:])  # beyond libmpg123's resync: not read
    flipped.write_bytes(bytes(b ^ 0xFF if i >= 2000 and (i - 2000) % 997 == 0 else b for i, b in enumerate(mp3)))  # read
    result = _asr("transcribe", str(work["model"]), str(zeroed), str(flipped))
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(flipped)]
    err = result.stderr.strip().splitlines()
    assert len(err) == 3 and "libmpg123" not in result.stderr and "Note:" not in result.stderr, err
    assert f"asr: skipped {zeroed}: truncated or corrupt data (Unspecified internal error)" in err
    assert f"asr: warning: {flipped}: the decoder reported damaged data and went on (error: " \
           "dequantization failed! (x4)); read as it is, glitches and all" in err
    assert err[-1] == "asr: 1 of 2 files could not be read"


def test_transcribe_files_from_a_list_or_stdin(work, tmp_path):
    good = [str(work["flac"]), str(work["audio"] / "b.wav")]
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.wav")  # a file name that is not UTF-8
    shutil.copy(good[1], odd)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"# my files\n\n" + "\n".join([good[1], str(tmp_path / "gone.wav")]).encode()
                        + b"\n" + os.fsencode(odd) + b"\n")
    expected = _asr("transcribe", str(work["model"]), good[0], good[1]).stdout.splitlines()
    result = _asr("transcribe", str(work["model"]), "--files-from", str(listing), good[0])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()  # the named file first, then the list in order, the missing one skipped
    assert lines[:2] == expected and lines[2].split("\t")[1] == expected[1].split("\t")[1]
    assert lines[2].split("\t")[0].encode("utf-8", "surrogateescape") == os.fsencode(odd)  # its own bytes
    assert result.stderr.strip().splitlines() == [f"asr: skipped {tmp_path / 'gone.wav'}: no such file",
                                                  "asr: 1 of 4 files could not be read"]
    piped = _asr("transcribe", str(work["model"]), "--files-from", "-", input="\n".join(good) + "\n")
    assert piped.returncode == 0 and piped.stdout.splitlines() == expected
    spaced = tmp_path / " lead.wav"  # a space is part of a name: the line is taken as written (CRLF ends it)
    shutil.copy(good[1], spaced)
    (tmp_path / "spaced.txt").write_bytes(b" lead.wav\r\n")
    result = _asr("transcribe", str(work["model"]), "--files-from", str(tmp_path / "spaced.txt"), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.split("\t")[0] == " lead.wav", result.stderr

    result = _asr("transcribe", str(work["model"]), "--files-from", str(tmp_path / "nolist.txt"))
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "nolist.txt: cannot read the file list")
    _one_line_error(_asr("transcribe", str(work["model"])).stderr, "no audio files given")


def test_a_file_list_that_names_no_file_is_one_line_error(work, capsys, tmp_path):
    """An empty list (or one of blank lines and comments) ended with status 0 and no word, as if
    every file had been transcribed."""
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n  \r\n# none yet\n")
    for listing in ("empty.txt", "blank.txt"):
        assert main(["transcribe", str(work["model"]), "--files-from", str(tmp_path / listing)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"asr: error: {tmp_path / listing}: no file names in it\n"
    result = _asr("transcribe", str(work["model"]), "--files-from", "-", input="")
    assert result.returncode == 2 and result.stdout == "" and result.stderr == "asr: error: -: no file names in it\n"


def test_a_file_list_in_utf16_is_named_so(work, capsys, tmp_path):
    """A list saved as "Unicode" by Notepad (UTF-16) was refused as binary data."""
    listing = tmp_path / "list.txt"
    for encoding in ("utf-16", "utf-16-le"):  # with and without the byte-order mark
        listing.write_bytes(f"{work['flac']}\n".encode(encoding))
        assert main(["transcribe", str(work["model"]), "--files-from", str(listing)]) == 2
        assert capsys.readouterr() == ("", f"asr: error: {listing}: UTF-16 text: save the list as UTF-8\n")


def test_audio_given_as_a_manifest_or_file_list_is_one_line_error(work, capsys, tmp_path):
    """An audio file or a checkpoint where a manifest or a list of files belongs (arguments in the
    wrong order) was read line by line: hundreds of 'skipped' lines of binary garbage."""
    flac, model = str(work["flac"]), str(work["model"])
    for command, culprit in (
            (["evaluate", model, flac, "--out", str(tmp_path / "report")], flac),
            (["evaluate", model, model, "--out", str(tmp_path / "report")], model),
            (["train", str(work["conf"]), f"out_dir={tmp_path / 'run'}", f"data.train_manifest={flac}"], flac)):
        assert main(command) == 2, command
        _one_line_error(capsys.readouterr().err, f"{culprit}: not a JSON-lines manifest (binary data")
    assert not (tmp_path / "report").exists() and not (tmp_path / "run").exists()
    for source, stdin in ((flac, None), ("-", "a.wav\0b.wav\0")):  # find -print0 on stdin
        result = _asr("transcribe", model, "--files-from", source, input=stdin)
        assert result.returncode == 2 and result.stdout == ""
        _one_line_error(result.stderr, f"{source}: not a list of file names, one per line (binary data")


def test_file_list_on_a_closed_stdin_is_one_line_error(work):
    result = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *ASR, "transcribe", str(work["model"]),
                             "--files-from", "-"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert result.returncode == 2 and result.stdout == ""  # an AttributeError traceback once
    _one_line_error(result.stderr, "-: cannot read the file list (standard input is closed)")


def test_transcribe_json_8khz_mp3_ogg(work, capsys):
    files = [work["audio"] / name for name in ("b.wav", "a.ogg", "a.mp3")] + [work["flac"]]
    assert main(["transcribe", "--json", str(work["model"]), *map(str, files)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["path"] for r in records] == list(map(str, files))
    for r in records:
        assert set(r) == {"path", "text", "duration_s", "decode_s", "words"}
        assert isinstance(r["text"], str) and r["decode_s"] >= 0
        assert [w["word"] for w in r["words"]] == r["text"].split()  # timestamps: tests/test_cli_lm.py
    info = sf.info(work["audio"] / "b.wav")
    assert info.samplerate == 8000
    assert records[0]["duration_s"] == pytest.approx(info.frames / 8000, abs=1e-3)
    flac_s = sf.info(work["flac"]).duration
    for r in records[1:]:  # ogg and mp3 hold the same audio as the flac (mp3: +- one frame of padding)
        assert r["duration_s"] == pytest.approx(flac_s, abs=0.06)
    assert captured.err == ""


def test_json_names_a_file_that_is_not_utf8_in_utf8(work, tmp_path):
    """'caf\\xe9.wav' was written as "caf\\udce9.wav": a lone surrogate, which JSON readers other
    than Python's refuse or replace. Its byte is now the text '\\xe9', and the output is plain UTF-8."""
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.wav")
    shutil.copy(work["audio"] / "b.wav", odd)
    result = subprocess.run([*ASR, "transcribe", str(work["model"]), odd, "--json"], capture_output=True, env=ENV,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert b"\\ud" not in result.stdout
    record = json.loads(result.stdout.decode("utf-8"))
    assert record["path"] == f"{tmp_path}/caf\\xe9.wav"


def test_missing_checkpoint_is_one_line_error(work, capsys):
    assert main(["transcribe", str(work["tmp"] / "nope.pt"), str(work["flac"])]) == 2
    _one_line_error(capsys.readouterr().err, "nope.pt", "no such checkpoint")
    assert main(["evaluate", str(work["tmp"] / "nope.pt"), str(work["manifest"])]) == 2
    _one_line_error(capsys.readouterr().err, "nope.pt")
    result = _asr("transcribe", str(work["tmp"] / "nope.pt"), str(work["flac"]))  # the real process
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "nope.pt", "no such checkpoint")


def test_not_a_checkpoint_is_one_line_error(work, capsys):
    assert main(["transcribe", str(work["manifest"]), str(work["flac"])]) == 2
    _one_line_error(capsys.readouterr().err, "dev.jsonl", "not a readable checkpoint",
                    "not the zip archive torch.save writes")


def test_a_folder_where_a_file_belongs_is_called_a_folder(work, capsys, tmp_path):
    """A folder given as the checkpoint, LM or a manifest's audio was 'no such ... file'; a lexicon or
    LM text that cannot be read showed Python's '[Errno 21] Is a directory: ...' or codec message."""
    folder, flac, model = tmp_path / "folder", str(work["flac"]), str(work["model"])
    folder.mkdir()
    for command, line in (
            (["transcribe", str(folder), flac], f"{folder}: a folder, not a checkpoint file"),
            (["transcribe", model, flac, "--lm", str(folder)], f"{folder}: a folder, not a language model file"),
            (["transcribe", model, flac, "--beam-size", "2", "--lexicon", str(folder)],
             f"{folder}: cannot read the lexicon (Is a directory)"),
            (["transcribe", model, flac, "--beam-size", "2", "--lexicon", flac],
             f"{flac}: cannot read the lexicon (not UTF-8 text)"),
            (["build-lm", str(tmp_path / "none.txt"), "--out", str(tmp_path / "lm.arpa")],
             f"{tmp_path / 'none.txt'}: cannot read the text (No such file or directory)")):
        assert main(command) == 2, command
        assert capsys.readouterr().err == f"asr: error: {line}\n"
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "folder", "duration": 1.0, "text": "a"}) + "\n"
                        + work["manifest"].read_text().splitlines()[0] + "\n")
    assert main(["evaluate", model, str(manifest), "--out", str(tmp_path / "report")]) == 1
    assert f"asr: skipped {manifest}:1: a folder, not an audio file: {folder}\n" in capsys.readouterr().err


def test_cut_short_or_foreign_checkpoint_is_one_line_error_without_torch_advice(work, capsys):
    cut = work["tmp"] / "cut.pt"  # a download or copy that stopped half way
    data = work["model"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert main(["transcribe", str(cut), str(work["flac"])]) == 2
    _one_line_error(capsys.readouterr().err, "cut.pt", "a checkpoint cut short")
    foreign = work["tmp"] / "foreign.pt"  # e.g. another toolkit's checkpoint, which pickles its classes
    torch.save({"args": argparse.Namespace(lr=1e-3), "state_dict": {"w": torch.zeros(2)}}, foreign)
    assert main(["evaluate", str(foreign), str(work["manifest"])]) == 2
    line = _one_line_error(capsys.readouterr().err, "foreign.pt", "Python objects (argparse.Namespace)")
    assert "weights_only" not in line and "safe_globals" not in line  # torch's advice to load unsafely
    assert cut.read_bytes() == data[: len(data) // 2]  # nothing the user had is changed


def test_mangled_checkpoint_is_one_line_error_and_nothing_is_written(work, capsys, tmp_path):
    payload = torch.load(work["model"], weights_only=True)
    weights = dict(payload["model_state"])
    first = next(iter(weights))
    del weights[first]
    mangled = {  # what a hand edit or other code may leave: each once gave a KeyError or RuntimeError
        "no_weights.pt": ({k: v for k, v in payload.items() if k != "model_state"}, "'model_state' is missing"),
        "no_tokenizer.pt": ({k: v for k, v in payload.items() if k != "tokenizer"}, "'tokenizer' is missing"),
        "bare.pt": ({"format": 1}, "'features_config' is missing"),
        "list_config.pt": ({**payload, "model_config": [1, 2]}, "'model_config' is a list, not a dict"),
        "number_weight.pt": ({**payload, "model_state": {**weights, first: 3}}, f"model_state[{first!r}] is a int"),
        "fewer_weights.pt": ({**payload, "model_state": weights}, f"model_state: no {first!r}"),
        "other_shape.pt": ({**payload, "model_config": {**payload["model_config"], "rnn_hidden": 7}},
                           "model_state: 'rnns.0.fwd.weight_ih_l0' has shape (192, 80), the model (21, 80)"),
    }
    for name, (content, cause) in mangled.items():
        path = tmp_path / name
        torch.save(content, path)
        for command in (["transcribe", str(path), str(work["flac"])],
                        ["evaluate", str(path), str(work["manifest"]), "--out", str(tmp_path / "decode")],
                        ["export", str(path), "--out", str(tmp_path / "export.pt")],
                        ["average", str(work["model"]), str(path), "--out", str(tmp_path / "average.pt")]):
            assert main(command) == 2, (name, command[0])
            _one_line_error(capsys.readouterr().err, f"{name}: not a usable asr checkpoint: {cause}")
    assert not any((tmp_path / out).exists() for out in ("decode", "export.pt", "average.pt"))
    result = _asr("transcribe", str(tmp_path / "no_weights.pt"), str(work["flac"]))  # the real process
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "no_weights.pt: not a usable asr checkpoint: 'model_state' is missing")


def test_unusable_device_is_one_line_error_before_the_model_is_read(work, capsys, tmp_path):
    missing = str(tmp_path / "none.pt")  # never opened: the device is checked first
    commands = {"transcribe": [missing, str(work["flac"])], "stream": [missing, str(work["flac"])],
                "evaluate": [missing, str(work["manifest"]), "--out", str(tmp_path / "out")],
                "tune-lm": [missing, str(work["manifest"]), "--lm", str(tmp_path / "lm.arpa")]}
    devices = {"gpu0": "not a device torch knows", "nonsense": "not a device torch knows",
               "meta": "'meta' tensors hold no data",  # a traceback once, after the model was moved there
               "cuda:99": "CUDA device"}  # a machine without CUDA, or with fewer than 100 GPUs
    if not torch.cuda.is_available():
        devices["cuda"] = "this machine has no CUDA device"
    for command, args in commands.items():
        for device, cause in devices.items():
            assert main([command, *args, "--device", device]) == 2, (command, device)
            _one_line_error(capsys.readouterr().err, f"--device {device}: ", cause)
    assert not (tmp_path / "out").exists()
    result = _asr("stream", str(work["model"]), str(work["flac"]), "--device", "meta")  # the real process
    assert result.returncode == 2 and result.stdout == ""
    _one_line_error(result.stderr, "--device meta: 'meta' tensors hold no data; use cpu or cuda")
    # the library refuses it too, naming the checkpoint
    from asr.checkpoint import CheckpointError, load_recognizer

    with pytest.raises(CheckpointError, match=r"model\.pt: cannot use device 'meta': 'meta' tensors hold no data"):
        load_recognizer(work["model"], device="meta")


# -------------------------------------------------------------------------------------- export
def test_export_half_precision_transcribes_as_the_original(work, shared_data, capsys):
    from asr.checkpoint import load_checkpoint, load_recognizer

    last, out = work["run"] / "last.pt", work["tmp"] / "export" / "half.pt"
    assert main(["export", str(last), "--out", str(out)]) == 0
    assert f"{out}: fp16 weights" in capsys.readouterr().out
    source, half = load_checkpoint(last), load_checkpoint(out)
    assert "train_state" in source and "train_state" not in half
    assert half["metrics"]["dtype"] == "fp16" and half["metrics"]["exported_from"] == str(last)
    assert half["metrics"]["step"] == source["metrics"]["step"]
    for name, weight in source["model_state"].items():
        got = half["model_state"][name]
        if weight.is_floating_point():
            assert got.dtype == torch.float16 and torch.allclose(got.float(), weight, rtol=1e-3, atol=1e-4), name
        else:
            assert torch.equal(got, weight), name  # e.g. BatchNorm's num_batches_tracked
    for name, stat in source["features_state"].items():  # CMVN stays exact
        assert torch.equal(half["features_state"][name], stat), name
    assert out.stat().st_size < 0.25 * last.stat().st_size  # no Adam moments, no EMA copy, half the bytes

    # last.pt holds the raw weights; model.pt (EMA or best) is the usual thing to export
    model_half = work["tmp"] / "export" / "model-half.pt"
    assert main(["export", str(work["model"]), "--out", str(model_half)]) == 0
    capsys.readouterr()
    assert model_half.stat().st_size < 0.6 * work["model"].stat().st_size
    wave = load_audio(work["flac"])  # (S,)
    lens = torch.tensor([len(wave)])
    full = load_recognizer(work["model"]).log_probs(torch.from_numpy(wave)[None], lens)[0]  # (1, T', V)
    loaded = load_recognizer(model_half)
    assert next(loaded.model.parameters()).dtype == torch.float32  # cast back on loading
    assert (loaded.log_probs(torch.from_numpy(wave)[None], lens)[0] - full).abs().max() < 0.05
    audio = [str(_flac(shared_data, uid)) for uid in UTTS]
    assert main(["transcribe", str(work["model"]), *audio]) == 0
    expected = capsys.readouterr().out
    assert main(["transcribe", str(model_half), *audio]) == 0
    assert capsys.readouterr().out == expected


def test_export_refuses_to_overwrite(work, capsys):
    out = work["tmp"] / "taken.pt"
    out.write_bytes(b"the user's file")
    assert main(["export", str(work["model"]), "--out", str(out)]) == 2
    _one_line_error(capsys.readouterr().err, "taken.pt", "already exists")
    assert out.read_bytes() == b"the user's file"
    link = work["tmp"] / "link.pt"
    link.symlink_to(work["tmp"] / "not-yet.pt")  # a link to nothing is the user's too
    for command in (["export", str(work["model"])], ["average", str(work["model"])]):
        assert main([*command, "--out", str(link)]) == 2
        _one_line_error(capsys.readouterr().err, "link.pt", "already exists")
        assert link.is_symlink() and not (work["tmp"] / "not-yet.pt").exists()
    assert main(["export", str(work["tmp"] / "nope.pt"), "--out", str(work["tmp"] / "new.pt")]) == 2
    _one_line_error(capsys.readouterr().err, "nope.pt", "no such checkpoint")
    assert not (work["tmp"] / "new.pt").exists()



def test_export_of_an_export_warns_that_the_rounding_stays(work, tmp_path, caplog, capsys):
    """--dtype fp32 of an fp16 export said 'fp32 weights' as if the precision were back."""
    half = tmp_path / "half.pt"
    assert main(["export", str(work["model"]), "--out", str(half)]) == 0
    assert caplog.records == []
    for dtype in ("fp32", "bf16"):
        assert main(["export", str(half), "--dtype", dtype, "--out", str(tmp_path / f"{dtype}.pt")]) == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"{half}: its weights are already rounded to fp16; as {dtype} they keep that rounding"]
        caplog.clear()
    assert main(["export", str(half), "--out", str(tmp_path / "again.pt")]) == 0  # fp16 again: nothing lost
    assert caplog.records == []
    capsys.readouterr()


def test_export_refuses_weights_beyond_the_range_of_fp16(work, tmp_path, capsys):
    """A weight above 65504 (a BatchNorm variance of unnormalized features) became inf in an fp16
    export, silently; bf16, with float32's range, takes it."""
    import torch

    from asr.checkpoint import load_checkpoint

    payload = load_checkpoint(work["model"])
    name = next(k for k in payload["model_state"] if k.endswith("running_var"))
    payload["model_state"][name][0] = 1e6
    torch.save(payload, tmp_path / "wide.pt")
    assert main(["export", str(tmp_path / "wide.pt"), "--out", str(tmp_path / "half.pt")]) == 2
    assert _one_line_error(capsys.readouterr().err) == (
        f"asr: error: {tmp_path / 'wide.pt'}: {name} holds 1e+06, beyond the range of fp16; it would become "
        "infinite (bf16 has float32's range)")
    assert not (tmp_path / "half.pt").exists()
    assert main(["export", str(tmp_path / "wide.pt"), "--dtype", "bf16", "--out", str(tmp_path / "bf16.pt")]) == 0
    assert bool(torch.isfinite(load_checkpoint(tmp_path / "bf16.pt")["model_state"][name]).all())
    capsys.readouterr()


def test_a_checkpoint_damaged_inside_is_refused_before_export_or_average_hide_it(work, tmp_path, capsys):
    """Bytes overwritten inside a weight loaded without a word (torch.load checks no checksum), and
    export or average wrote them to a new file with new checksums; a part cut out of the middle was
    'cannot read the checkpoint (Invalid argument)'."""
    import zipfile

    data = work["model"].read_bytes()
    with zipfile.ZipFile(work["model"]) as archive:
        member = max(archive.infolist(), key=lambda m: m.file_size)  # the largest weight
    start = member.header_offset + 30 + len(member.filename) + int.from_bytes(
        data[member.header_offset + 28: member.header_offset + 30], "little")  # its bytes, after the local header
    overwritten = bytearray(data)
    overwritten[start + 8: start + 16] = bytes(8)
    (tmp_path / "overwritten.pt").write_bytes(overwritten)
    (tmp_path / "holed.pt").write_bytes(data[:start] + data[start + 64:])
    for name, cause in (("overwritten.pt", f"a damaged file: {member.filename} fails its checksum"),
                        ("holed.pt", "a damaged file: its zip index points outside the file; a part is missing")):
        for command in (["export", str(tmp_path / name), "--out", str(tmp_path / "x.pt")],
                        ["average", str(work["model"]), str(tmp_path / name), "--out", str(tmp_path / "x.pt")],
                        ["transcribe", str(tmp_path / name), str(work["flac"])]):
            assert main(command) == 2
            assert _one_line_error(capsys.readouterr().err) == (
                f"asr: error: {tmp_path / name}: not a readable checkpoint ({cause})")
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_of_another_format_version_is_named_as_such(work, tmp_path, capsys):
    """A checkpoint of a newer (or older) asr was called 'not an asr checkpoint'."""
    import torch

    from asr.checkpoint import FORMAT_VERSION, load_checkpoint

    payload = load_checkpoint(work["model"])
    cases = {"newer.pt": (FORMAT_VERSION + 1, f"checkpoint format {FORMAT_VERSION + 1}; this asr reads format "
                                              f"{FORMAT_VERSION} (the file was written by a newer asr)"),
             "older.pt": (FORMAT_VERSION - 1, f"checkpoint format {FORMAT_VERSION - 1}; this asr reads format "
                                              f"{FORMAT_VERSION}"),
             "text.pt": ("one", f"not an asr checkpoint (format {FORMAT_VERSION} expected)")}
    for name, (version, cause) in cases.items():
        torch.save({**payload, "format": version}, tmp_path / name)
        for command in (["export", str(tmp_path / name), "--out", str(tmp_path / "x.pt")],
                        ["average", str(work["model"]), str(tmp_path / name), "--out", str(tmp_path / "x.pt")],
                        ["transcribe", str(tmp_path / name), str(work["flac"])]):
            assert main(command) == 2
            assert _one_line_error(capsys.readouterr().err) == f"asr: error: {tmp_path / name}: {cause}"
    assert not (tmp_path / "x.pt").exists()


def test_export_and_average_out_a_folder_say_a_file_name_is_needed(work, tmp_path, capsys):
    """--out DIR was refused as 'already exists; refusing to overwrite it', as if a file were there."""
    for command in (["export", str(work["model"])], ["average", str(work["model"])]):
        assert main([*command, "--out", str(tmp_path)]) == 2
        assert _one_line_error(capsys.readouterr().err) == (
            f"asr: error: {tmp_path}: a folder; name the new checkpoint file (e.g. {tmp_path / 'model.pt'})")
    assert list(tmp_path.iterdir()) == []


def test_export_and_average_refuse_an_out_folder_before_reading_a_checkpoint(work, capsys):
    """--out below a file was refused only when the new checkpoint was written, after every input
    had been read (averaging many large checkpoints first)."""
    notes = work["tmp"] / "notes.txt"
    notes.write_text("mine")
    missing = str(work["tmp"] / "nope.pt")  # never read: the output is refused first
    for command in (["export", missing], ["average", missing, str(work["model"])]):
        assert main([*command, "--out", str(notes / "model.pt")]) == 2
        _one_line_error(capsys.readouterr().err, str(notes), "exists and is not a folder")
    assert notes.read_text() == "mine"

# ------------------------------------------------------------------------------- long recordings
def test_long_recording_is_cut_at_pauses_and_joined(work, short_utterances, capsys):
    gap = np.zeros(int(0.5 * 16000), dtype=np.float32)  # half a second of silence between utterances
    waves = [load_audio(e["audio_filepath"]) for e in short_utterances]  # 2.5-4 s each
    long = work["tmp"] / "long.wav"
    sf.write(long, np.concatenate([waves[0], gap, waves[1], gap, waves[2], gap, waves[3]]), 16000)
    starts = np.cumsum([0] + [len(w) + len(gap) for w in waves[:-1]]) / 16000  # where each utterance begins

    assert main(["transcribe", str(work["model"]), str(long), "--json", "--max-segment-s", "5"]) == 0
    cut = json.loads(capsys.readouterr().out)
    assert len(cut["segments"]) == 4  # one piece per utterance: the cuts fell in the silences
    for (seg_start, seg_end), begin, wave in zip(cut["segments"], starts, waves):
        assert seg_start <= begin and begin + len(wave) / 16000 <= seg_end + 1e-3  # (rounded to ms)
        assert seg_end - seg_start <= 5.0
    assert cut["segments"][-1][1] == pytest.approx(cut["duration_s"], abs=1e-3)
    # the same pieces transcribed one by one give the same text, joined
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_checkpoint(work["model"], word_timestamps=True, max_segment_s=0)
    whole = load_audio(long)
    pieces = [transcriber.transcribe([whole[round(a * 16000):round(b * 16000)]])[0] for a, b in cut["segments"]]
    assert cut["text"] == " ".join(p.text for p in pieces if p.text)
    expected_words = [w.start_s + a for p, (a, _) in zip(pieces, cut["segments"]) for w in p.words]
    assert [w["start_s"] for w in cut["words"]] == pytest.approx(expected_words, abs=2e-3)
    assert all(0 <= w["start_s"] <= w["end_s"] <= cut["duration_s"] for w in cut["words"])

    assert main(["transcribe", str(work["model"]), str(long), "--json", "--max-segment-s", "0"]) == 0
    assert "segments" not in json.loads(capsys.readouterr().out)  # 0: the file stays whole
    for bad in ("-1", "0.01", "nan"):  # 0.01 once looped for ever: its cuts did not move forward
        assert main(["transcribe", str(work["model"]), str(long), "--max-segment-s", bad]) == 2
        _one_line_error(capsys.readouterr().err, f"--max-segment-s {bad}: must be 0 (never cut) or at least 1 s")
    assert main(["transcribe", str(work["model"]), str(long), "--max-segment-s", "1", "--json"]) == 0
    pieces = json.loads(capsys.readouterr().out)["segments"]
    assert all(0.33 <= b - a <= 1.0 for a, b in pieces[:-1]) and pieces[-1][1] == pytest.approx(len(whole) / 16000, abs=1e-3)


def test_nbest_of_a_recording_cut_into_pieces_joins_the_pieces_nbest(work, short_utterances, capsys):
    """--nbest of an input cut at pauses: the best joins of its pieces' n-best lists, by summed score."""
    from asr.beam_search import BeamSearchConfig, BeamSearchDecoder
    from asr.transcribe import Transcriber

    gap = np.zeros(8000, dtype=np.float32)  # (S,) half a second of silence
    long = work["tmp"] / "long_nbest.wav"
    sf.write(long, np.concatenate([x for e in short_utterances[:3] for x in (load_audio(e["audio_filepath"]), gap)]), 16000)
    beam = ["--lexicon-free", "--beam-size", "8", "--max-segment-s", "5", "--json"]
    assert main(["transcribe", str(work["model"]), str(long), *beam]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(["transcribe", str(work["model"]), str(long), *beam, "--nbest", "3"]) == 0
    cut = json.loads(capsys.readouterr().out)
    assert len(cut["segments"]) == 3 and "nbest" not in one
    assert {k: v for k, v in cut.items() if k not in ("nbest", "decode_s")} == {k: v for k, v in one.items() if k != "decode_s"}
    texts, scores = [h["text"] for h in cut["nbest"]], [h["score"] for h in cut["nbest"]]
    assert len(texts) == 3 and texts[0] == one["text"] and len(set(texts)) == 3
    assert scores == sorted(scores, reverse=True)
    assert main(["transcribe", str(work["model"]), short_utterances[0]["audio_filepath"], *beam, "--nbest", "3"]) == 0
    assert [set(h) for h in json.loads(capsys.readouterr().out)["nbest"]] == [set(h) for h in cut["nbest"]]

    decoder = BeamSearchDecoder(Transcriber.from_checkpoint(work["model"]).recognizer.tokenizer, lexicon_free=True,
                                config=BeamSearchConfig(beam_size=8, nbest=3))
    joined = Transcriber.from_checkpoint(work["model"], decoder=decoder, max_segment_s=5).transcribe(long)[0]
    assert (joined.nbest[0].text, joined.nbest[0].score) == (joined.text, joined.hypothesis.score)
    assert [h.text for h in joined.nbest] == texts
    whole = load_audio(long)  # each piece alone: every joined entry is one choice per piece, scores summed
    pieces = [Transcriber.from_checkpoint(work["model"], decoder=decoder, max_segment_s=0)
              .transcribe(whole[round(a * 16000):round(b * 16000)])[0].nbest for a, b in cut["segments"]]
    choices: dict[str, float] = {}  # joined text: the best summed score that makes it
    for combo in itertools.product(*pieces):
        text = " ".join(h.text for h in combo if h.text)
        choices[text] = max(choices.get(text, -math.inf), sum(h.score for h in combo))
    assert [choices[h.text] for h in joined.nbest] == pytest.approx([h.score for h in joined.nbest], abs=1e-3)
    assert joined.nbest[0].score == pytest.approx(sum(p[0].score for p in pieces), abs=1e-3)


def test_audio_too_short_for_the_model_gives_an_empty_transcript(shared_data, tmp_path, capsys, caplog):
    """A model whose convolutions do not pad in time needs 320 ms of audio; a 5 ms file was a
    ValueError traceback from the model, in transcribe and evaluate, and took its batch with it."""
    import dataclasses

    from asr.checkpoint import checkpoint_payload, save_checkpoint
    from asr.features import FeatureConfig, FeatureExtractor
    from asr.model import DeepSpeech2, load_preset
    from asr.recognizer import Recognizer
    from asr.tokenizer import CharTokenizer

    torch.manual_seed(0)
    preset = load_preset("tiny")
    cfg = dataclasses.replace(preset, conv_paddings=tuple((0, kf // 2) for _, kf in preset.conv_kernels))
    features = FeatureExtractor(FeatureConfig(kind="fbank"))
    features.set_cmvn(torch.full((features.num_features,), -8.0), torch.full((features.num_features,), 3.0))
    recognizer = Recognizer(features, DeepSpeech2(cfg, features.num_features, 29), CharTokenizer()).eval()
    assert recognizer.min_samples == 5120  # 31 frames of 20 ms every 10 ms: 320 ms
    model = tmp_path / "unpadded.pt"
    save_checkpoint(checkpoint_payload(recognizer, {"name": "unpadded"}), model)
    wave, rate = sf.read(shared_data / "fsdd" / "recordings" / "7_theo_0.wav", dtype="int16")  # 8 kHz, 0.43 s
    good, short = tmp_path / "good.wav", tmp_path / "short.wav"
    sf.write(good, wave, rate)
    sf.write(short, wave[1000:1040], rate)  # 5 ms

    assert main(["transcribe", str(model), str(good)]) == 0
    alone = capsys.readouterr().out
    assert main(["transcribe", str(model), str(short), str(good)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{short}\t\n" + alone and "Traceback" not in err  # the good file as when alone
    assert f"{short}: 5.0 ms of audio is too short for the model (it needs 320.0 ms): empty transcript" in caplog.text
    assert main(["transcribe", str(model), str(short), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["text"], record["words"]) == ("", [])
    manifest = tmp_path / "set.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": p.name, "duration": sf.info(p).duration, "text": "seven"})
                                + "\n" for p in (good, short)))
    for options in ([], ["--lexicon-free", "--beam-size", "4"]):
        caplog.clear()
        assert main(["evaluate", str(model), str(manifest), "--out", str(tmp_path / "report"), *options]) == 0
        assert "utterances 2 " in capsys.readouterr().out  # scored: its reference words count as deletions
        assert (tmp_path / "report" / "hyps.txt").read_text().splitlines()[1] == "short\t"
        assert f"{manifest}:2: {short}: 5.0 ms of audio is too short for the model" in caplog.text


def test_transcriber_reads_a_window_at_a_time_and_shares_batch_time(work, short_utterances):
    from asr import transcribe
    from asr.transcribe import Transcriber

    paths = [e["audio_filepath"] for e in short_utterances] * 3  # 12 inputs, 2.5-4 s each
    consumed = []

    def inputs():
        for path in paths:
            consumed.append(path)
            yield path

    windowed = Transcriber.from_checkpoint(work["model"], max_batch_s=2.0)  # windows of 8 x 2 s of audio
    first = next(iter(windowed.transcribe_iter(inputs())))
    assert len(consumed) < len(paths)  # the first transcript came before the last files were read
    assert first.source == paths[0]
    whole = Transcriber.from_checkpoint(work["model"], max_batch_s=1000.0)
    assert 8 * 2.0 < sum(sf.info(p).duration for p in paths) < transcribe.WINDOW_BATCHES * 1000.0
    expected = whole.transcribe(paths)  # one window, one batch
    assert [t.text for t in windowed.transcribe(paths)] == [t.text for t in expected]
    # in one batch each input's decode time is its share of the batch's, by samples
    rates = [t.decode_s / t.duration_s for t in expected]
    assert max(rates) == pytest.approx(min(rates), rel=1e-6)

    gap = np.zeros(8000, dtype=np.float32)
    long = np.concatenate([x for p in paths[:4] for x in (load_audio(p), gap)])
    start = time.perf_counter()
    cut = Transcriber.from_checkpoint(work["model"], max_segment_s=5.0).transcribe([long])[0]
    assert len(cut.segments) == 4  # its pieces shared one batch; their time is counted once
    assert cut.decode_s <= time.perf_counter() - start


# ------------------------------------------------------------------------------------ evaluate
def _columns(row: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", row[5:])]


def test_evaluate_names_files_of_the_same_name_apart(work, shared_data, capsys, tmp_path):
    """spk1/001.wav and spk2/001.wav were both '001' in hyps.txt and errs.txt: which was which?"""
    names = {"spk1/001.wav": "3_theo_5.wav", "spk2/001.wav": "7_theo_0.wav", "spk2/002.wav": "1_theo_1.wav",
             "spk2/002.flac": "1_theo_2.wav"}
    lines = []
    for name, digit in names.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        wave, rate = sf.read(shared_data / "fsdd" / "recordings" / digit, dtype="int16")
        sf.write(tmp_path / name, wave, rate)
        lines.append(json.dumps({"audio_filepath": name, "duration": len(wave) / rate, "text": "a"}) + "\n")
    wave, rate = sf.read(shared_data / "fsdd" / "recordings" / "5_theo_0.wav", dtype="int16")
    sf.write(tmp_path / "spk1" / "only.wav", wave, rate)
    lines.append(json.dumps({"audio_filepath": "spk1/only.wav", "duration": len(wave) / rate, "text": "a"}) + "\n")
    (tmp_path / "set.jsonl").write_text("".join(lines))
    assert main(["evaluate", str(work["model"]), str(tmp_path / "set.jsonl"), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    ids = [line.split("\t")[0] for line in (tmp_path / "out" / "hyps.txt").read_text().splitlines()]
    assert ids == [*names, "only"]
    blocks = (tmp_path / "out" / "errs.txt").read_text().strip().split("\n\n")
    assert [block.split("\n")[0] for block in blocks] == ids


def test_evaluate_writes_reports(work, capsys, tmp_path):
    out = tmp_path / "decode"
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"^WER \d+\.\d\d % \[ \d+ / 28, \d+ ins, \d+ del, \d+ sub \]$", stdout, flags=re.M), stdout
    assert re.search(r"^CER \d+\.\d\d % \[ \d+ / \d+, \d+ ins, \d+ del, \d+ sub \]$", stdout, flags=re.M)
    assert re.search(r"^utterances 4  audio 9\.9 s  decode \d+\.\d s  RTF \d+\.\d{4}$", stdout, flags=re.M)
    assert f"report: {out / 'errs.txt'}" in stdout

    hyps = [line.split("\t") for line in (out / "hyps.txt").read_text().splitlines()]
    assert [h[0] for h in hyps] == UTTS
    refs = [json.loads(line)["text"].lower() for line in work["manifest"].read_text().splitlines()]
    wer = (out / "wer.txt").read_text()
    assert wer.startswith("WER ") and "\nCER " in wer
    blocks = (out / "errs.txt").read_text().strip().split("\n\n")
    assert len(blocks) == 4
    for uid, ref, (_, hyp), block in zip(UTTS, refs, hyps, blocks):
        lines = block.split("\n")
        assert lines[0] == uid and lines[1].startswith("REF: ") and lines[2].startswith("HYP: ")
        assert _columns(lines[1]) == _columns(lines[2])  # REF and HYP words line up
        words = lambda row: [w for w in row[5:].split() if set(w) != {"*"}]  # noqa: E731
        assert words(lines[1]) == ref.split() and words(lines[2]) == hyp.split()


def test_evaluate_default_out_dir(work, capsys):
    assert main(["evaluate", str(work["model"]), str(work["manifest"])]) == 0
    assert (work["run"] / "decode" / "dev" / "wer.txt").is_file()
    capsys.readouterr()


def test_evaluate_never_replaces_another_report_or_the_users_files(work, tmp_path):
    """A report folder is written over only by a new report on the same manifest; the refusal comes
    before the model runs, and what was there is left as it was."""
    out = tmp_path / "decode"
    assert _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(out)).returncode == 0
    assert (out / "wer.txt").read_text().splitlines()[-1] == f"manifest {work['manifest']}"
    again = _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(out), "--beam-size", "4")
    assert again.returncode == 0, again.stderr  # the same set decoded anew replaces its own report

    other = tmp_path / "other" / work["manifest"].name  # same stem, another folder: same default report folder
    other.parent.mkdir()
    other.write_text(work["manifest"].read_text().splitlines()[0] + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = _asr("evaluate", str(work["model"]), str(other), "--out", str(out))
    assert result.returncode == 2
    _one_line_error(result.stderr, str(out), f"holds the report on {work['manifest']}", "--out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "hyps.txt").write_text("my own hypotheses\n")
    result = _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(mine))
    assert result.returncode == 2
    _one_line_error(result.stderr, str(mine / "hyps.txt"), "not part of a report of asr evaluate")
    assert [p.name for p in mine.iterdir()] == ["hyps.txt"] and (mine / "hyps.txt").read_text() == "my own hypotheses\n"

    (mine / "results.json").write_text("{}")  # and the results file is checked before the work too
    result = _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "fresh"),
                  "--results-json", str(mine / "results.json"))
    assert result.returncode == 2 and not (tmp_path / "fresh").exists()
    _one_line_error(result.stderr, str(mine / "results.json"), "not a results file")

    # a results file named as one of the report's own files was refused only after the whole set had
    # been decoded (status 2, no results written)
    for name in ("hyps.txt", "wer.txt"):
        result = _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "fresh"),
                      "--results-json", str(tmp_path / "fresh" / name))
        assert result.returncode == 2 and not (tmp_path / "fresh").exists() and not result.stdout, result.stdout
        _one_line_error(result.stderr, str(tmp_path / "fresh" / name), f"the report's own {name}")


def test_evaluate_report_names_files_and_manifests_that_are_not_utf8(work, tmp_path):
    """A manifest naming 'caf\\xe9.wav' (json.dumps writes the name os.listdir gives as "caf\\udce9.wav"),
    or a manifest whose own name is not UTF-8, was decoded and then ended in a UnicodeEncodeError
    traceback while the report was written, leaving hyps.txt and errs.txt without wer.txt (so a
    second run refused the folder). The names are written as their own bytes, as transcribe prints them."""
    audio = os.fsdecode(b"caf\xe9.flac")
    shutil.copy(work["flac"], tmp_path / audio)
    entry = json.loads(work["manifest"].read_text().splitlines()[0])
    manifest = tmp_path / os.fsdecode(b"s\xe9t.jsonl")
    manifest.write_text(json.dumps({**entry, "audio_filepath": audio}) + "\n")
    out = tmp_path / "out"
    for _ in range(2):  # and the second run knows the report as its own
        result = _asr("evaluate", str(work["model"]), str(manifest), "--out", str(out))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (out / "hyps.txt").read_bytes().startswith(b"caf\xe9\t")
    assert (out / "errs.txt").read_bytes().startswith(b"caf\xe9\nREF: ")
    assert (out / "wer.txt").read_bytes().splitlines()[-1] == b"manifest " + os.fsencode(manifest)


def test_evaluate_reports_bad_manifest_line(work, tmp_path, capsys, caplog):
    lines = work["manifest"].read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], '{"audio_filepath": "x.flac", "duration": 1.0', *lines[1:]]) + "\n")
    result = _asr("evaluate", str(work["model"]), str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr  # scored, but not the whole set: like transcribe's skipped files
    assert re.search(rf"^asr: skipped {re.escape(str(bad))}:2: invalid JSON", result.stderr, flags=re.M), result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"asr: {bad}: 1 of 5 utterances skipped (bad lines or unreadable audio, named above); "
        "the figures cover the other 4")
    assert "Traceback" not in result.stderr
    assert "utterances 4 " in result.stdout
    # every line bad: nothing to score is an error
    (tmp_path / "empty.jsonl").write_text("not json\n")
    assert main(["evaluate", str(work["model"]), str(tmp_path / "empty.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"asr: skipped {tmp_path / 'empty.jsonl'}:1: invalid JSON")
    assert err[1:] == [f"asr: error: {tmp_path / 'empty.jsonl'}: no usable utterances"]


def test_evaluate_of_a_manifest_away_from_its_audio_says_so_once(work, shared_data, tmp_path, capsys):
    """One 'skipped' line per utterance (30 here, hundreds for a real set), then 'no usable
    utterances': a few are named now, then what is likely wrong, as the error."""
    manifest = shared_data / "an4-subset" / "asr" / "an4_train.json"
    assert main(["evaluate", str(work["model"]), str(manifest), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    first = manifest.parent / "tests/data/asr/train/an4/wav/an46-mmap-b.wav"
    assert len(err) == 4 and err[0] == f"asr: skipped {manifest}:1: audio file not found: {first}"
    assert err[3] == (f"asr: error: {manifest}: none of the 30 audio files exist (first: {first}); "
                      "are the paths relative to the manifest's folder?")
    assert not (tmp_path / "out").exists()


def test_evaluate_warns_when_manifest_durations_cut_the_audio(work, tmp_path):
    """Audio is read only up to the manifest's duration: a manifest whose durations are half the
    files' (written at another rate) was scored on half of each recording without a word, where
    training warns of the same manifest."""
    entries = [json.loads(line) for line in work["manifest"].read_text().splitlines()]
    half = tmp_path / "half.jsonl"
    half.write_text("".join(json.dumps({**e, "duration": e["duration"] / 2}) + "\n" for e in entries))
    result = _asr("evaluate", str(work["model"]), str(half), "--out", str(tmp_path / "half"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("asr: warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"asr: warning: {half}: 4 of 4 utterances have a duration "), \
        result.stderr
    assert f"{half}:" in warnings[0].split("e.g. ")[1] and "scored cut short" in warnings[0]
    # the manifest's own durations, and segments of a file (which may be shorter than it), are not warned of
    segments = tmp_path / "segments.jsonl"
    segments.write_text("".join(json.dumps({**entries[0], "duration": entries[0]["duration"] / 2, "offset": offset})
                                + "\n" for offset in (0, entries[0]["duration"] / 2)))
    for manifest in (work["manifest"], segments):
        result = _asr("evaluate", str(work["model"]), str(manifest), "--out", str(tmp_path / manifest.stem))
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_evaluate_warns_once_of_utterances_longer_than_a_batch(work, tmp_path):
    """Utterances longer than --batch-s form batches of their own: one warning that names the
    option and the longest one's manifest line (it named training's max_batch_s and an index)."""
    result = _asr("evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "d"), "--batch-s", "2.5")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in work["manifest"].read_text().splitlines()]
    longest = max(range(4), key=lambda i: entries[i]["duration"])
    long = sum(e["duration"] > 2.5 for e in entries)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert 0 < long < 4 and warnings == [
        f"asr: warning: {long} of 4 utterances are longer than --batch-s 2.5 s and form batches of their own, larger "
        f"than that; the longest: {work['manifest']}:{longest + 1}: {entries[longest]['audio_filepath']} "
        f"({entries[longest]['duration']:.2f} s)"], result.stderr


def test_evaluate_names_the_manifest_line_of_unreadable_audio(work, tmp_path):
    """The warning named the audio file only; the manifest's line is what to fix or remove."""
    (tmp_path / "damaged.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    good = work["manifest"].read_text().splitlines()[0]
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("\n".join([good, json.dumps({"audio_filepath": "damaged.flac", "duration": 1.0, "text": "a b"})]))
    result = _asr("evaluate", str(work["model"]), str(manifest), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "utterances 1 " in result.stdout, result.stderr
    warning = re.findall(r"^asr: warning: skipped unreadable audio: (.*)$", result.stderr, flags=re.M)
    assert len(warning) == 1 and warning[0].startswith(f"{manifest}:2: {tmp_path / 'damaged.flac'}: "), result.stderr
    assert "Traceback" not in result.stderr
    # log lines read as the CLI's own ('asr: warning: ...'); --verbose names the level and module
    verbose = _asr("-v", "evaluate", str(work["model"]), str(manifest), "--out", str(tmp_path / "out2"))
    assert re.search(r"^WARNING asr\.data: skipped unreadable audio: " + re.escape(f"{manifest}:2: "), verbose.stderr,
                     flags=re.M), verbose.stderr
    assert not re.search(r"^(DEBUG|INFO|WARNING|ERROR) ", result.stderr, flags=re.M), result.stderr


def test_a_set_none_of_whose_audio_can_be_read_is_named(work, capsys, tmp_path):
    """evaluate, tune-lm and train's dev scoring said only 'no utterance of the set could be read'."""
    (tmp_path / "a.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense")
    bad = tmp_path / "unreadable.jsonl"
    bad.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a b"}) + "\n")
    (tmp_path / "text.txt").write_text("a b\n")
    assert main(["build-lm", str(tmp_path / "text.txt"), "--out", str(tmp_path / "lm.arpa"), "--order", "2"]) == 0
    commands = {
        "nothing to score": ["evaluate", str(work["model"]), str(bad), "--out", str(tmp_path / "report")],
        "nothing to tune on": ["tune-lm", str(work["model"]), str(bad), "--lm", str(tmp_path / "lm.arpa"),
                               "--lm-weights", "1", "--word-scores", "0", "--jobs", "1"]}
    for cause, command in commands.items():
        capsys.readouterr()
        assert main(command) == 2, command
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"asr: error: {bad}: no utterance of the set could be read: {cause}")
    assert not (tmp_path / "report").exists()
    # train finds it before the first epoch, from the headers, and creates no run folder
    assert main(["train", str(work["conf"]), f"out_dir={tmp_path / 'run'}", "threads=1", "epochs=1",
                 f"data.dev_manifest={bad}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"asr: error: {bad}: no utterance of the set could be read, e.g. {tmp_path / 'a.wav'}: ")
    assert err[-1].endswith("; nothing to score the model on") and len(err) == 1
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------- train
def test_train_bad_config_key(work, capsys, tmp_path):
    assert main(["train", str(work["conf"]), f"out_dir={tmp_path / 'r'}", "optim.lrr=1"]) == 2
    _one_line_error(capsys.readouterr().err, "'optim.lrr'")
    conf = tmp_path / "typo.yaml"
    conf.write_text(work["conf"].read_text() + "model:\n  rnn_hiden: 8\n")
    assert main(["train", str(conf), f"out_dir={tmp_path / 'r'}"]) == 2
    _one_line_error(capsys.readouterr().err, "'model.rnn_hiden'")
    conf.write_text("epochs: [1\n")
    assert main(["train", str(conf), f"out_dir={tmp_path / 'r'}"]) == 2
    _one_line_error(capsys.readouterr().err, f"{conf}:", "invalid YAML")
    assert not (tmp_path / "r").exists()


def test_train_on_audio_none_of_which_can_be_read_fails_and_saves_no_model(work, capsys, tmp_path):
    """It used to finish with status 0 and a model.pt of untrained weights."""
    (tmp_path / "a.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense")
    shutil.copy(work["conf"], tmp_path / "notes.txt")  # not audio either
    bad = tmp_path / "unreadable.jsonl"
    bad.write_text("".join(json.dumps({"audio_filepath": name, "duration": 1.0, "text": "a b"}) + "\n"
                           for name in ("a.wav", "notes.txt")))
    run = tmp_path / "run"
    assert main(["train", str(work["conf"]), f"out_dir={run}", "threads=1", f"data.train_manifest={bad}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"asr: error: {bad}: none of the training audio could be read, e.g. ")
    assert err[0].endswith("; nothing was trained") and ("a.wav: " in err[0] or "notes.txt: " in err[0])
    assert not run.exists()  # refused before the run folder is made


def test_train_into_existing_run(work, capsys):
    args = ["train", str(work["conf"]), f"out_dir={work['run']}", "device=cpu", "threads=1", "features.kind=fbank"]
    assert main(args) == 2
    _one_line_error(capsys.readouterr().err, str(work["run"]), "already exists", "--resume")


def test_output_folder_that_is_a_file_is_refused_in_words(work, capsys, tmp_path):
    """A run or sweep folder named where a file is: 'File exists' once, and train said it only
    after reading the data and building the model."""
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["train", str(work["conf"]), f"out_dir={taken}", f"data.train_manifest={tmp_path / 'none.jsonl'}"]) == 2
    assert capsys.readouterr().err == (  # refused before the (missing) manifest is read
        f"asr: error: {taken}: exists and is not a folder; no run written there (choose another out_dir)\n")
    assert main(["sweep", str(work["conf"]), "--grid", "optim.lr=1e-3", "--out", str(taken)]) == 2
    assert capsys.readouterr().err == (
        f"asr: error: {taken}: exists and is not a folder; no sweep written there (choose another --out)\n")
    assert taken.read_text() == "mine"


def test_train_stopped_by_max_steps_scores_the_dev_set(work, capsys, tmp_path):
    args = ["train", str(work["conf"]), f"out_dir={tmp_path / 'run'}", "device=cpu", "threads=1", "features.kind=fbank",
            "data.max_batch_size=2", f"data.dev_manifest={work['manifest']}", "max_steps=3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "epoch 1/2 done  step 2  dev WER " in captured.err
    assert "epoch 2/2 stopped inside the epoch at  step 3  dev WER " in captured.err
    assert "steps 3  epochs 1  best dev WER " in captured.out and "n/a" not in captured.out


def test_train_resume_continues(work, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(work["run"], run)
    args = ["train", str(work["conf"]), f"out_dir={run}", "device=cpu", "threads=1", "features.kind=fbank",
            "epochs=3"]
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "steps 3  epochs 3" in out and f"model: {run / 'model.pt'}" in out


def test_train_resume_refuses_other_optimizer_settings(work, capsys, tmp_path):
    """A resume goes on with last.pt's optimizer (its learning rate, weight decay, betas): another
    optim.lr used to be ignored while config.yaml said it was the run's."""
    run = tmp_path / "run"
    shutil.copytree(work["run"], run)
    config = (run / "config.yaml").read_text()
    args = ["train", str(work["conf"]), f"out_dir={run}", "device=cpu", "threads=1", "features.kind=fbank",
            "epochs=3", "--resume"]
    assert main([*args, "optim.lr=0.01"]) == 2
    _one_line_error(capsys.readouterr().err, f"{run / 'last.pt'}: ", "optim.lr=0.003 (config: 0.01)",
                    "resume with the run's own config")
    assert main([*args, "optim.weight_decay=0.5", "optim.betas=[0.8,0.9]"]) == 2
    _one_line_error(capsys.readouterr().err, "optim.weight_decay=0.0 (config: 0.5)",
                    "optim.betas=[0.9, 0.98] (config: [0.8, 0.9])")
    assert (run / "config.yaml").read_text() == config and not (run / "epoch-3.pt").exists()


def test_negative_grids_and_weights_parse_as_values():
    """`--word-scores -1:3:1`, as the README writes it, was taken by argparse for an option."""
    from asr.cli import build_parser
    from asr.cli.parser import with_negative_values_joined

    argv = ["tune-lm", "m.pt", "dev.jsonl", "--lm", "x.arpa", "--word-scores", "-1:3:1", "--lm-weights", "-0.5,1"]
    args = build_parser().parse_args(with_negative_values_joined(argv))
    assert (args.word_scores, args.lm_weights, args.lm) == ("-1:3:1", "-0.5,1", "x.arpa")
    args = build_parser().parse_args(with_negative_values_joined(["transcribe", "m.pt", "a.wav", "--word-score", "-2e-1"]))
    assert args.word_score == -0.2 and args.audio == ["a.wav"]
    result = _asr("tune-lm", "m.pt", "dev.jsonl", "--lm", "x.arpa", "--word-scores", "-1:3:1")
    assert "expected one argument" not in result.stderr  # it gets as far as the missing checkpoint


def test_python_api_bad_inputs_are_audio_errors(work):
    """What the README's Transcriber gets by mistake: one path instead of a list, numbers, None,
    NaN samples, an impossible rate; each is a clear error, and transcribe_iter goes on past it."""
    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    t = Transcriber.from_checkpoint(work["model"])
    flac = str(work["flac"])
    alone = t.transcribe(flac)  # was iterated character by character ("f: no such file")
    assert [r.source for r in alone] == [flac] and alone[0].text == t.transcribe([flac])[0].text
    wave = load_audio(flac)
    assert t.transcribe(wave)[0].text == alone[0].text  # one array: one input, not S of them
    bad = wave.copy()
    bad[10] = np.nan
    results = list(t.transcribe_iter([3.5, None, bad, flac]))
    assert [str(r) for r in results[:3]] == [
        "<item 0>: not audio: expected a path, the file's bytes or a 1-D array, got float",
        "<item 1>: not audio: expected a path, the file's bytes or a 1-D array, got NoneType",
        "<array 2>: 1 NaN or infinite samples"]
    assert all(isinstance(r, AudioError) for r in results[:3]) and results[3].text == alone[0].text
    for rate in (0, -1, 4000, True, 16000.5, "16000", 10**6, float("nan")):
        with pytest.raises(ValueError, match=rf"sample_rate={re.escape(repr(rate))}: must be an integer from 8000 "
                                             "to 768000 Hz"):
            t.transcribe([wave], sample_rate=rate)
    for rate in (np.int64(16000), 16000.0, np.float32(16000)):  # integral numbers of any type
        assert t.transcribe(wave, sample_rate=rate)[0].hypothesis == alone[0].hypothesis


def _same(a, b) -> bool:
    """Two transcripts of the same samples: the same tokens and (to float rounding) score."""
    return a.hypothesis.tokens == b.hypothesis.tokens and a.hypothesis.score == pytest.approx(b.hypothesis.score, abs=1e-4)


def test_python_api_arrays_are_read_as_files_are(work, shared_data, tmp_path):
    """Integer PCM is scaled, a 2-D array is one multichannel recording (either way round), a tensor
    that requires grad is detached, arrays are resampled as files are: each gives what the file gives."""
    from asr.transcribe import Transcriber

    t = Transcriber.from_checkpoint(work["model"])
    flac = str(work["flac"])
    from_file = t.transcribe(flac)[0]
    pcm, _ = sf.read(flac, dtype="int16")  # (S,) int16 at 16 kHz
    as_ints = t.transcribe(pcm)
    assert len(as_ints) == 1 and _same(as_ints[0], from_file)  # was used unscaled: 32768 times too loud
    assert _same(t.transcribe(torch.from_numpy(pcm.astype(np.int32) << 16))[0], from_file)

    digits = shared_data / "fsdd" / "recordings"
    left, rate = sf.read(digits / "3_theo_5.wav", dtype="int16")  # 8 kHz
    right, _ = sf.read(digits / "3_theo_6.wav", dtype="int16")
    n = min(len(left), len(right))
    stereo = np.stack([left[:n], right[:n]], axis=1)  # (S, 2), as soundfile reads
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate, subtype="PCM_16")
    expected = t.transcribe([path])[0]
    tensor = torch.from_numpy(stereo.T / 32768).float().requires_grad_(True)  # (2, S), as torchaudio.load gives
    for array in (stereo, stereo.T, tensor):
        got = t.transcribe(array, sample_rate=np.int64(rate))  # was S inputs of 2 samples, or 2 inputs
        assert len(got) == 1 and got[0].source == "<array 0>" and _same(got[0], expected)
        assert got[0].duration_s == pytest.approx(n / rate)
    both = t.transcribe([left[:n], right[:n]], sample_rate=rate)  # a list of arrays: a list of inputs
    assert [r.source for r in both] == ["<array 0>", "<array 1>"]

    # 8,001 Hz has no small ratio to 16 kHz: asr.audio.resample takes it as 8,000 Hz (2:1), exactly as
    # the 8 kHz file is resampled; torchaudio's exact 16000:8001 filter bank differs (and takes 0.5 GB)
    mono = load_audio(digits / "3_theo_5.wav", sample_rate=None)
    assert _same(t.transcribe(mono, sample_rate=8001)[0], t.transcribe([digits / "3_theo_5.wav"])[0])
    assert t.transcribe(mono, sample_rate=8001)[0].hypothesis.score == t.transcribe(mono, sample_rate=8000)[0].hypothesis.score


def test_python_api_encoded_files_in_memory_and_non_recordings(work):
    import io

    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    t = Transcriber.from_checkpoint(work["model"])
    flac = work["flac"]
    expected = t.transcribe([flac])[0]
    data = flac.read_bytes()
    for one in (data, bytearray(data), memoryview(data), io.BytesIO(data)):  # alone: one encoded file
        got = t.transcribe(one)
        assert len(got) == 1 and _same(got[0], expected), type(one)
    with open(flac, "rb") as f:
        assert [r.source for r in t.transcribe([f, io.BytesIO(data)])] == [str(flac), "<file 1>"]
    wave = load_audio(flac)
    results = list(t.transcribe_iter([np.float32(0.5), np.array(1.0), np.stack([wave] * 3)[None], np.zeros((20, 20)),
                                      wave > 0, wave.astype(np.complex64)]))
    assert [str(r) for r in results] == [
        "<array 0>: a single number (float32), not a waveform",
        "<array 1>: a single number (float64), not a waveform",
        f"<array 2>: 3-D shape (1, 3, {len(wave)}) is not a recording; pass several recordings as a list of 1-D arrays",
        "<array 3>: shape (20, 20) is not one recording of at most 8 channels (S, C) or (C, S); pass several "
        "recordings as a list of 1-D arrays",
        "<array 4>: boolean samples; give float samples in [-1, 1] or int16/int32/uint8 PCM",
        "<array 5>: complex samples (complex64); give float samples in [-1, 1] or int16/int32/uint8 PCM"]
    assert all(isinstance(r, AudioError) for r in results)
    for alone in (np.float32(0.5), np.array(1.0), 3.5):  # alone: one bad input, not a traceback
        with pytest.raises(AudioError, match=r"^<(array|item) 0>: "):
            t.transcribe(alone)


def test_python_api_bad_settings_and_decoders(work):
    from asr.decode import DecodeError, Hypothesis
    from asr.transcribe import Transcriber

    for bad in (float("nan"), 0, -1, "10", float("inf"), True, None):
        with pytest.raises(ValueError, match=rf"^max_batch_s={re.escape(repr(bad))}: must be a"):
            Transcriber.from_checkpoint(work["model"], max_batch_s=bad)
    for bad in ("10", True, float("nan"), -1, 0.5):
        with pytest.raises(ValueError, match=rf"^max_segment_s={re.escape(str(bad) if bad != '10' else repr(bad))}: must"):
            Transcriber.from_checkpoint(work["model"], max_segment_s=bad)
    wave = load_audio(work["flac"])
    for returned, got in (([], "0 results"), ([Hypothesis("a")] * 3, "3 results (Hypothesis)"),
                          (["a", "b"], "2 results (str)"), (None, "a NoneType")):
        t = Transcriber.from_checkpoint(work["model"], decoder=lambda lp, ln, r=returned: r)
        with pytest.raises(DecodeError, match=rf"^decoder .*<lambda>: returned {re.escape(got)} for a batch of size 2; "
                                              "it must return a list of one Hypothesis per input$"):
            t.transcribe([wave, wave])
    with pytest.raises(TypeError, match="^decoder='greedy': must be callable"):
        Transcriber.from_checkpoint(work["model"], decoder="greedy")


def test_transcriber_runs_a_model_left_in_train_mode_in_eval_mode(work):
    """Recognizer.log_probs switches to eval mode and back, module by module: a model being trained
    (BatchNorm updating its statistics, dropout) transcribes as in eval mode and is left as it was."""
    from asr.transcribe import Transcriber

    t = Transcriber.from_checkpoint(work["model"])
    expected = t.transcribe([work["flac"]])[0]
    recognizer = t.recognizer
    norms = [m for m in recognizer.model.modules() if type(m).__name__ == "MaskedBatchNorm"]
    assert norms  # the tiny preset batch-normalizes its convolutions and recurrent inputs
    recognizer.model.train()
    norms[0].eval()  # a frozen layer inside a training model keeps its own mode
    modes = [m.training for m in recognizer.model.modules()]
    state = {k: v.clone() for k, v in recognizer.model.state_dict().items()}
    got = t.transcribe([work["flac"]])[0]
    assert got.hypothesis == expected.hypothesis
    assert [m.training for m in recognizer.model.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in recognizer.model.state_dict().items())  # running stats

    wave = torch.from_numpy(load_audio(work["flac"]))[None]  # (1, S)
    log_probs, lens = recognizer.log_probs(wave, torch.tensor([wave.shape[1]]))
    assert not log_probs.requires_grad and not log_probs.is_inference()
    log_probs[:, :, 0] -= 2  # ordinary tensors: an in-place edit such as a blank penalty works
    lens -= 1

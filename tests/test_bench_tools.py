"""The benchmark scripts in tools/ answer a user's mistake with one line, `prog: error: cause`, and status 2 (errors.run_tool)."""

from __future__ import annotations

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from asr.errors import run_tool

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / tool), *args], capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_line(tmp_path: Path):
    manifest = tmp_path / "none.jsonl"
    cases = [
        ("bench_decode.py", [str(tmp_path / "none.pt"), str(manifest)], f"bench_decode: error: {tmp_path / 'none.pt'}: "),
        ("bench_decode.py", [str(tmp_path / "none.pt"), str(manifest), "--threads", "0"],
         "bench_decode: error: --threads 0: must be >= 1"),
        ("bench_loader.py", [str(manifest)], f"bench_loader: error: {manifest}: cannot read manifest"),
        ("bench_loader.py", [str(manifest), "--workers", "-1"], "bench_loader: error: --workers -1: must be >= 0"),
    ]
    for tool, args, start in cases:
        result = _run(tool, *args)
        assert result.returncode == 2 and result.stdout == "", (tool, args, result.stderr)
        assert result.stderr.startswith(start) and len(result.stderr.splitlines()) == 1, result.stderr


def _run_here(tool: str, *args: str, monkeypatch, capsys) -> tuple[int, str]:
    """(exit status, stderr) of a script of tools/ run as `python tools/TOOL ARGS` in this process
    (its __main__ block included), without paying torch's import again for every case."""
    monkeypatch.setattr(sys, "argv", [str(TOOLS / tool), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(TOOLS / tool), run_name="__main__")
    return stop.value.code, capsys.readouterr().err


def test_bad_counts_presets_and_folders_of_the_benchmarks_are_one_line(shared_data, tmp_path, monkeypatch, capsys):
    dev = shared_data / "LibriSpeech" / "dev-4spk"  # bench_long_audio's speakers
    speaker = tmp_path / "latin1" / "1" / "2"
    speaker.mkdir(parents=True)
    (speaker / "1-2.trans.txt").write_bytes("1-2-0000 CAF\xc9\n".encode("latin-1"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.jsonl").write_text("my own manifest\n")
    (tmp_path / "earlier" / "run").mkdir(parents=True)
    presets = "preset: unknown model preset 'nope' (available: ds1, ds2, medium, small, tiny)"
    cases = [
        ("bench_train.py", ["--batch", "0"], "--batch 0: must be >= 1"),  # was a ValueError of range()
        ("bench_train.py", ["--steps", "0"], "--steps 0: must be >= 1"),
        ("bench_train.py", ["--num-utts", "0"], "--num-utts 0: must be >= 1"),  # was an IndexError
        ("bench_train.py", ["--infer-utts", "0"], "--infer-utts 0: must be >= 1"),
        ("bench_train.py", ["--min-dur", "5", "--max-dur", "2"], "--min-dur 5 --max-dur 2: must be seconds, 0 <= min <= max"),
        ("bench_train.py", ["--preset", "nope"], presets),  # was refused after the features stage
        ("bench_train.py", ["--data-dir", str(tmp_path / "none")],
         f"{tmp_path / 'none'}: no such folder (--data-dir: a LibriSpeech-layout folder)"),
        ("bench_train.py", ["--data-dir", str(tmp_path / "latin1")],
         f"{speaker / '1-2.trans.txt'}: cannot read the text (not UTF-8 text)"),
        ("bench_long_audio.py", [str(tmp_path / "none.pt")], f"{tmp_path / 'none.pt'}: no such checkpoint file"),
        ("bench_long_audio.py", [str(tmp_path / "junk.pt"), "--minutes", "0"], "--minutes 0: must be a positive number"),
        ("bench_long_audio.py", [str(tmp_path / "junk.pt"), "--rate", "4000"], "--rate 4000: must be from 8000 to 768000 Hz"),
        ("bench_long_audio.py", [str(tmp_path / "junk.pt"), "--channels", "0"], "--channels 0: must be from 1 to 8"),
        ("bench_long_audio.py", [str(tmp_path / "junk.pt"), "--speaker", "1"],
         f"--speaker 1: no FLAC files in {dev / '1'} (speakers there: 4088, 4406, 5652, 8226)"),  # was a ValueError of numpy
        ("bench_rnn_packing.py", ["--repeats", "0"], "--repeats 0: must be >= 1"),  # was a StatisticsError
        ("bench_rnn_packing.py", ["--lengths", "100", "1"], "--lengths 1: must be >= 2"),
        ("bench_rnn_packing.py", ["--threads", "0"], "--threads 0: must be >= 1"),
        ("bench_checkpoint.py", ["--repeat", "0"], "--repeat 0: must be >= 1"),
        ("bench_checkpoint.py", ["--preset", "nope"], presets),
        ("bench_checkpoint.py", ["--dir", str(tmp_path / "mine")],  # was replaced
         f"{tmp_path / 'mine' / 'train.jsonl'}: exists and is not the manifest bench_checkpoint writes; not overwritten "
         "(remove it or choose another path)"),
        ("bench_checkpoint.py", ["--dir", str(tmp_path / "earlier")],
         f"{tmp_path / 'earlier' / 'run'}: exists (an earlier run of this script?); remove it or choose another --dir"),
    ]
    for tool, args, message in cases:
        status, err = _run_here(tool, *args, monkeypatch=monkeypatch, capsys=capsys)
        assert (status, err) == (2, f"{tool.removesuffix('.py')}: error: {message}\n"), (tool, args)
    assert (tmp_path / "mine" / "train.jsonl").read_text() == "my own manifest\n"
    assert list((tmp_path / "earlier" / "run").iterdir()) == []


def test_bench_long_audio_names_a_failed_transcription_in_one_line(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    result = _run("bench_long_audio.py", str(tmp_path / "junk.pt"), "--minutes", "0.02")
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"bench_long_audio: error: `asr transcribe` failed: asr: error: {tmp_path / 'junk.pt'}: "
                                    "not a readable checkpoint")  # was a CalledProcessError


def test_bench_adapter_refuses_a_bad_preset_or_size_when_made(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_impl_adapter", TOOLS / "asr_bench_adapter.py")
    adapter = importlib.util.module_from_spec(spec)  # as the harness loads it: not in sys.modules
    spec.loader.exec_module(adapter)
    cfg = {"rnn_type": "gru", "hidden": 32, "layers": 1, "bidirectional": True, "seed": 0, "grad_clip": 400.0,
           "src": ".", "opts": {}}
    made = adapter.make_adapter(cfg)
    made.build(cfg)
    assert made.num_params() > 0 and made.tokenize("a b") == made.tokenizer.encode("a b")
    for change, message in [({"opts": {"preset": "nope"}}, "preset: unknown model preset 'nope'"),
                            ({"hidden": 0}, "model.rnn_hidden must be in [1, 16384], got 0")]:
        with pytest.raises(SystemExit) as stop:  # the harness's own user errors are sys.exit messages
            adapter.make_adapter({**cfg, **change})
        assert str(stop.value.code).startswith(f"asr_bench_adapter: error: {message}")


def test_run_tool_reports_system_errors_and_ctrl_c_in_one_line(capsys):
    class OwnError(Exception):
        pass

    def raises(e: BaseException):
        def main() -> int:
            raise e
        return main

    cases = [
        (raises(IsADirectoryError(21, "Is a directory", "out.txt")), None, 2, "t: error: out.txt: Is a directory\n"),
        (raises(OSError(28, "No space left on device")), None, 2, "t: error: No space left on device\n"),
        (raises(OwnError("x.txt:3: no words")), (OwnError,), 2, "t: error: x.txt:3: no words\n"),
        (raises(KeyboardInterrupt()), None, 130, "t: interrupted\n"),
    ]
    for main, errors, status, err in cases:
        assert run_tool("t", main, errors) == status and capsys.readouterr().err == err
    # `path` names the file of an OSError that carries none; one that names its own keeps it
    assert run_tool("t", raises(OSError(28, "No space left on device")), path="out.txt") == 2
    assert capsys.readouterr().err == "t: error: out.txt: No space left on device\n"
    assert run_tool("t", raises(IsADirectoryError(21, "Is a directory", "in.txt")), path="out.txt") == 2
    assert capsys.readouterr().err == "t: error: in.txt: Is a directory\n"
    with pytest.raises(ValueError):  # a tool that names its own errors: anything else is a bug, with its traceback
        run_tool("t", raises(ValueError("a bug")), (OwnError,))

"""Synthetic speech with espeak-ng (tools/tts_corpus.py, asr/datasets/tts.py); skipped without espeak-ng."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import interrupt_reading

from asr.audio import load_audio
from asr.datasets.tts import Rendition, engine_voices, plan_renditions, render_corpus, synthesize
from asr.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
LINES = ["The quick brown fox jumps over the lazy dog.", "", "It was 3 o'clock on the 21st of May!"]

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def test_plans_are_seeded_and_vary_voice_speed_and_pitch():
    a = plan_renditions(LINES, variants=3, seed=1)
    assert a == plan_renditions(LINES, variants=3, seed=1)
    assert a != plan_renditions(LINES, variants=3, seed=2)
    assert len(a) == 6  # the empty line is skipped
    assert len({r.voice for r in a[:3]}) == 3  # the variants of one line: different voices
    assert all(0.8 <= r.speed <= 1.25 and 30 <= r.pitch <= 70 for r in a)
    assert len({r.key for r in a}) == 6


def test_each_engine_renders_about_an_equal_share():
    plans = plan_renditions([f"line {i}" for i in range(400)], seed=0, engines=("espeak-ng", "flite"))
    flite = sum(r.engine == "flite" for r in plans)
    assert 160 <= flite <= 240, flite  # flite has 4 voices, espeak-ng 128 pairs: drawn by engine first
    assert {r.voice for r in plans if r.engine == "flite"} == set(engine_voices("flite"))
    every = plan_renditions(["one line"], variants=200, seed=0, engines=("espeak-ng", "flite"))
    assert len({(r.engine, r.voice) for r in every}) == len(every) == 132  # all the pairs, each once


@needs_espeak
def test_espeak_ng_speed_changes_duration(tmp_path):
    slow = synthesize(Rendition(LINES[0], "espeak-ng", "en-us+f3", speed=0.8), tmp_path / "slow.wav")
    fast = synthesize(Rendition(LINES[0], "espeak-ng", "en-us+f3", speed=1.25), tmp_path / "fast.wav")
    assert 1.3 < slow / fast < 1.9  # tempo 1.5625x; the pauses at the ends do not scale
    info = sf.info(tmp_path / "fast.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


@needs_espeak
def test_tts_corpus_tool_writes_wavs_and_manifest_and_resumes(tmp_path, capsys):
    text = tmp_path / "lines.txt"
    text.write_text("\n".join(LINES) + "\n")
    spec = importlib.util.spec_from_file_location("tts_corpus", REPO / "tools" / "tts_corpus.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = [str(text), "--out", str(tmp_path / "tts"), "--variants", "2", "--seed", "0", "--engines", "espeak-ng"]
    assert tool.main(args) == 0
    utts = read_manifest(tmp_path / "tts" / "tts.jsonl")
    assert [u.text for u in utts] == [LINES[0], LINES[0], LINES[2], LINES[2]]
    assert len({u.speaker for u in utts[:2]}) == 2 and all(u.speaker.startswith("espeak-ng:") for u in utts)
    for u in utts:
        info = sf.info(u.audio_filepath)
        assert info.samplerate == 16000 and abs(info.duration - u.duration) < 1e-3 and 1.0 < u.duration < 8.0
        wave, _ = sf.read(u.audio_filepath)
        assert abs(wave).max() > 0.05  # speech, not silence
    mtimes = [Path(u.audio_filepath).stat().st_mtime_ns for u in utts]
    assert tool.main(args) == 0  # a second run keeps the rendered files
    assert [Path(u.audio_filepath).stat().st_mtime_ns for u in utts] == mtimes
    capsys.readouterr()
    assert tool.main([str(text), "--out", str(tmp_path / "x"), "--engines", "festival"]) == 2
    assert "festival" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (optional)")
def test_flite_renders_at_16_khz(tmp_path):
    duration_s = synthesize(Rendition(LINES[0], "flite", "slt", speed=1.1), tmp_path / "f.wav")
    info = sf.info(tmp_path / "f.wav")
    assert info.samplerate == 16000 and abs(info.duration - duration_s) < 1e-3 and 1.0 < duration_s < 6.0


@needs_espeak
def test_rate_8000_band_limits_and_a_kept_file_at_another_rate_is_rendered_again(tmp_path):
    plans = plan_renditions(["seven"], variants=1, seed=3, engines=["espeak-ng"])
    wide = render_corpus(plans, tmp_path, name="d")
    wav = read_manifest(wide)[0].audio_filepath
    assert sf.info(wav).samplerate == 16000
    narrow = read_manifest(render_corpus(plans, tmp_path, name="d", sample_rate=8000))[0]
    assert narrow.audio_filepath == wav and sf.info(wav).samplerate == 8000
    assert abs(sf.info(wav).duration - narrow.duration) < 1e-3
    assert abs(sf.read(wav)[0]).max() > 0.05  # speech, not silence
    spectrum = np.abs(np.fft.rfft(load_audio(wav, 16000))) ** 2  # what training reads, back at 16 kHz
    above_4400_hz = spectrum[int(len(spectrum) * 0.55):].sum() / spectrum.sum()
    assert above_4400_hz < 1e-3  # the 16 kHz rendering of this word has about 13 % there


def _tts_tool():
    spec = importlib.util.spec_from_file_location("tts_corpus", REPO / "tools" / "tts_corpus.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tts_corpus_tool_names_an_unreadable_text_in_one_line(tmp_path, capsys):
    """Runs without a synthesizer: the text is read before one is needed."""
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "folder").mkdir()
    for name, cause in [("missing.txt", "No such file or directory"), ("folder", "Is a directory"),
                        ("latin1.txt", "not UTF-8 text")]:  # asr.text.read_error_cause, as read_normalized_lines says it
        capsys.readouterr()
        assert _tts_tool().main([str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"tts_corpus: error: {tmp_path / name}: cannot read the text ({cause})\n"
    assert not (tmp_path / "out").exists()


def test_tts_corpus_tool_stops_on_ctrl_c_in_one_line(tmp_path):
    """Runs without a synthesizer: interrupted while reading the text, status 130, nothing written."""
    run = interrupt_reading([sys.executable, str(REPO / "tools" / "tts_corpus.py"), str(tmp_path / "fifo"),
                             "--out", str(tmp_path / "out")], tmp_path / "fifo")
    assert (run.returncode, run.stdout, run.stderr) == (130, "", "tts_corpus: interrupted\n")
    assert not (tmp_path / "out").exists()


@needs_espeak
def test_tts_corpus_tool_refuses_bad_options_and_keeps_the_users_files(tmp_path, capsys):
    text = tmp_path / "lines.txt"
    text.write_text("seven\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    out = tmp_path / "tts"
    (out / "wav").mkdir(parents=True)
    (out / "mine.jsonl").write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "a"}\n')
    (tmp_path / "afile").write_text("x")
    tool = _tts_tool()
    base = ["--engines", "espeak-ng"]
    cases = [
        ([str(text), "--out", str(out), "--max-lines", "-1"], "--max-lines -1"),  # used to drop the last line
        ([str(text), "--out", str(out), "--name", "../up"], "--name '../up'"),
        ([str(text), "--out", str(out), "--name", "mine"], "mine.jsonl: exists and is not a manifest of tts_corpus"),
        ([str(text), "--out", str(tmp_path / "afile" / "sub")], "afile: exists and is not a folder"),
        ([str(tmp_path / "empty.txt"), "--out", str(out)], "no line with words"),
    ]
    for args, cause in cases:
        capsys.readouterr()
        assert tool.main(args + base) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and cause in err[0], (args, err)
    assert (out / "mine.jsonl").read_text().startswith('{"audio_filepath": "a.wav"')
    assert not (tmp_path / "up.jsonl").exists() and not (out / "tts.jsonl").exists()
    assert tool.main([str(text), "--out", str(out)] + base) == 0
    wav = next((out / "wav").glob("tts-*.wav"))
    wav.write_bytes(wav.read_bytes()[:30])  # damaged: named, not a traceback after rendering the others
    capsys.readouterr()
    assert tool.main([str(text), "--out", str(out)] + base) == 2
    assert f"{wav}: damaged" in capsys.readouterr().err
    wav.unlink()
    assert tool.main([str(text), "--out", str(out)] + base) == 0  # rendered again; its own manifest replaced

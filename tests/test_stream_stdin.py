"""`asr stream -` when raw PCM on standard input ends or goes wrong: a part frame at the end, NaN or
infinite floats, a terminal instead of a pipe. Real speech, sent through a real process."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.checkpoint import checkpoint_payload, save_checkpoint
from conftest import SHORT_UTTS, dev4spk_flac
from test_streaming import MODELS, _recognizer

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random forward-only model (16 kHz): its transcripts are not words, but they are the same
    for the same audio."""
    path = tmp_path_factory.mktemp("stdin") / "forward.pt"
    save_checkpoint(checkpoint_payload(_recognizer(MODELS["conv-gru-lookahead"])), path)
    return path


def _stream(checkpoint: Path, data: bytes, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "asr.cli", "stream", str(checkpoint), *args], input=data,
                            capture_output=True, env=ENV, cwd=REPO, timeout=120)
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    return result


def test_a_part_frame_at_the_end_of_stdin_is_dropped_and_told(checkpoint, shared_data):
    """Bytes after the last whole frame were dropped without a word; now one line says how many and
    why, and the transcript is that of the whole frames, with status 0."""
    recordings = shared_data / "fsdd" / "recordings"
    left = sf.read(recordings / "3_theo_5.wav", dtype="int16")[0]  # (S,) 8 kHz
    right = sf.read(recordings / "3_theo_6.wav", dtype="int16", frames=len(left))[0]
    stereo = np.stack([left, np.pad(right, (0, len(left) - len(right)))], axis=1).astype("<i2")  # (S, 2)
    options = ["-", "--rate", "8000", "--channels", "2"]
    whole = _stream(checkpoint, stereo.tobytes(), *options)
    assert whole.returncode == 0 and whole.stdout.startswith("-\t") and "within a frame" not in whole.stderr
    cut = _stream(checkpoint, stereo.tobytes() + b"\x01\x02\x03", *options)
    assert cut.returncode == 0 and cut.stdout == whole.stdout, cut.stderr
    notes = [line for line in cut.stderr.splitlines() if "within a frame" in line]
    assert notes == ["asr: -: standard input ended within a frame: 3 trailing bytes dropped "
                     "(s16le, 2 channels: 4 bytes a frame)"]
    odd = _stream(checkpoint, left.astype("<i2").tobytes() + b"\x7f", "-", "--rate", "8000")  # mono, one byte more
    assert odd.returncode == 0 and odd.stdout.startswith("-\t")
    assert "asr: -: standard input ended within a frame: 1 trailing byte dropped (s16le, mono: 2 bytes a frame)" \
        in odd.stderr.splitlines()
    # not even one frame: nothing to transcribe, said as such (it was "no audio arrived")
    short = _stream(checkpoint, b"\x01\x02\x03", "-", "--channels", "2")
    assert short.returncode == 1 and short.stdout == ""
    assert short.stderr.splitlines()[1:] == [
        "asr: skipped -: standard input ended within its first frame: 3 bytes arrived "
        "(s16le, 2 channels: 4 bytes a frame)",
        "asr: 1 of 1 files could not be read"]


def test_a_nan_in_f32le_stdin_stops_it_with_the_transcript_of_the_audio_before(checkpoint, shared_data):
    """A NaN in the middle of float input was a one-line error with status 2 that lost the
    transcript of everything before it, did not say where, and left the inputs after '-' unread.
    Now the input stops there as if it had ended: its transcript is that of the samples before the
    NaN, the error names the sample, and the inputs after it are transcribed; status 1."""
    floats = load_audio(dev4spk_flac(shared_data, SHORT_UTTS[0])).astype("<f4")  # (S,) 16 kHz, 2.37 s
    after = shared_data / "fsdd" / "recordings" / "3_theo_5.wav"
    before = _stream(checkpoint, floats[:20000].tobytes(), "-", "--format", "f32le")
    assert before.returncode == 0 and before.stdout.startswith("-\t") and before.stdout.strip() != "-"
    floats[20000] = np.nan  # at 1.25 s
    stopped = _stream(checkpoint, floats.tobytes(), "-", str(after), "--format", "f32le")
    assert stopped.returncode == 1, stopped.stderr
    lines = stopped.stdout.splitlines()
    assert len(lines) == 2 and lines[0] + "\n" == before.stdout and lines[1].startswith(f"{after}\t")
    assert ("asr: stopped -: sample 20000 (1.250 s in, byte 80000) is NaN, not audio (is the input f32le?); "
            "the transcript is of the audio before it") in stopped.stderr.splitlines()
    assert "asr: -: 1.25 s in chunks of 100 ms" in stopped.stderr  # the audio heard: all before the NaN


def test_s16le_sent_as_f32le_is_named_without_a_numpy_warning(checkpoint, shared_data):
    """The usual cause of NaN floats: 16-bit samples read as 32-bit floats, which shows within the
    first chunk: the input is skipped as an unreadable file is, with no transcript of the samples
    before (it printed numpy's 'RuntimeWarning: invalid value encountered in divide' too)."""
    pcm = load_audio(dev4spk_flac(shared_data, SHORT_UTTS[1]))  # (S,) 16 kHz
    pcm = (np.clip(pcm, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    result = _stream(checkpoint, pcm, "-", "--format", "f32le")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[1:] == [
        "asr: skipped -: sample 1 (0.000 s in, byte 4) is NaN, not audio (is the input f32le?)",
        "asr: 1 of 1 files could not be read"]


def test_stdin_that_is_a_terminal_is_refused_before_the_model_is_read(tmp_path):
    """`asr stream CKPT -` typed at a prompt listened to the keyboard, taking keystrokes as samples."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "asr.cli", "stream", str(tmp_path / "missing.pt"), "-"],
                                stdin=follower, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("asr: error: -: standard input is a terminal; pipe raw PCM into it "
                             "(e.g. arecord -t raw -f S16_LE -r 16000 | asr stream CKPT - --rate 16000)\n")


def test_huge_f32le_samples_are_warned_about_and_stop_the_input_where_features_fail(checkpoint, shared_data):
    """Finite floats far beyond full scale (integer values sent unscaled, or garbage) gave no word:
    1e30 gave an empty transcript, status 0. Now the input is warned about once, as a file is, and
    where the samples make features that are not finite the input stops there, as at a NaN."""
    recordings = shared_data / "fsdd" / "recordings"
    digit = sf.read(recordings / "3_theo_5.wav", dtype="float32")[0]  # (S,) 8 kHz, 0.23 s
    options = ["-", "--format", "f32le", "--rate", "8000"]

    loud = _stream(checkpoint, (digit * 1e6).astype("<f4").tobytes(), *options)  # loud, still finite features
    assert loud.returncode == 0 and loud.stdout.startswith("-\t")
    warnings = [line for line in loud.stderr.splitlines() if "float samples peak at" in line]
    assert len(warnings) == 1 and warnings[0].startswith("asr: warning: -: float samples peak at ")
    assert "dB above full scale (1.0)" in warnings[0]

    huge = _stream(checkpoint, (digit * 1e30).astype("<f4").tobytes(), *options)
    assert huge.returncode == 1 and huge.stdout == ""
    assert huge.stderr.splitlines()[-2:] == [
        "asr: skipped -: the audio 0.000 s in (samples up to 9.96e+27) makes features that are not finite: "
        "far too loud to be audio",
        "asr: 1 of 1 files could not be read"]
    assert sum("float samples peak at" in line for line in huge.stderr.splitlines()) == 1

    late = digit.copy()
    late[1200:] *= 1e30  # from 0.15 s on
    after = recordings / "3_theo_6.wav"
    stopped = _stream(checkpoint, late.astype("<f4").tobytes(), *options, str(after))
    assert stopped.returncode == 1
    lines = stopped.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("-\t") and lines[0] != "-\t" and lines[1].startswith(f"{after}\t")
    assert ("asr: stopped -: the audio 0.130 s in (samples up to 5.04e+26) makes features that are not finite: "
            "far too loud to be audio; the transcript is of the audio before it") in stopped.stderr.splitlines()

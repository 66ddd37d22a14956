"""libmpg123's notes on damaged MP3 files: caught and logged as one line of ours, not left on stderr."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
import soundfile as sf

from asr.audio import AudioError, audio_info, load_audio

UTT = "LibriSpeech/dev-4spk/8226/274371/8226-274371-0020.flac"  # 2.37 s, 16 kHz


@pytest.fixture(scope="module")
def mp3(shared_data: Path, tmp_path_factory) -> bytes:
    wave, rate = sf.read(shared_data / UTT, dtype="float32")
    path = tmp_path_factory.mktemp("mp3") / "utt.mp3"
    sf.write(path, wave, rate, format="MP3", subtype="MPEG_LAYER_III")
    return path.read_bytes()


def _zeroed(tmp_path: Path, mp3: bytes) -> Path:
    """3000 bytes of zeros 1000 bytes in: libmpg123 gives up resyncing, and says so on stderr."""
    path = tmp_path / "zeroed.mp3"
    path.write_bytes(mp3[:1000] + bytes(3000) + mp3[4000:])
    return path


def _flipped(tmp_path: Path, mp3: bytes) -> Path:
    """Every 997th byte inverted: libmpg123 decodes it all, patching over what it cannot dequantize."""
    content = bytearray(mp3)
    for at in range(2000, len(content), 997):
        content[at] ^= 0xFF
    path = tmp_path / "flipped.mp3"
    path.write_bytes(bytes(content))
    return path


def test_a_failed_mp3_read_is_our_one_line_error_alone(tmp_path, mp3, capfd, caplog):
    path = _zeroed(tmp_path, mp3)
    with caplog.at_level(logging.DEBUG, logger="asr.decoder_stderr"), pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(err.value).startswith(f"{path}: truncated or corrupt data")
    assert capfd.readouterr().err == ""  # was: "Note: Illegal Audio-MPEG-Header 0x00000000 at offset 1080." and 3 more lines
    assert "Illegal Audio-MPEG-Header" in caplog.text  # kept, at DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_damaged_mp3_decoded_anyway_is_named_in_one_warning(tmp_path, mp3, capfd, caplog):
    path = _flipped(tmp_path, mp3)
    wave = load_audio(path)
    assert len(wave) == audio_info(path).num_frames
    assert capfd.readouterr().err == ""  # was: "[src/libmpg123/layer3.c:INT123_do_layer3():1804] error: dequantization failed!" x4
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == (f"{path}: the decoder reported damaged data and went on (error: dequantization "
                                   "failed! (x4)); read as it is, glitches and all")


def test_a_whole_mp3_is_read_without_a_word(tmp_path, mp3, capfd, caplog):
    path = tmp_path / "whole.mp3"
    path.write_bytes(mp3)
    load_audio(path)
    assert capfd.readouterr().err == "" and caplog.text == ""


def test_stderr_is_left_alone_while_other_threads_run(tmp_path, mp3, capfd, caplog):
    """Its file descriptor is the whole process's: pointed away, another thread's messages would be
    lost with libmpg123's. So the notes go to stderr as before, and a thread's writes all arrive."""
    stop = threading.Event()
    written = []

    def chatter() -> None:
        while not stop.is_set():
            os.write(2, b"other thread\n")
            written.append(1)
            stop.wait(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        with pytest.raises(AudioError):
            load_audio(_zeroed(tmp_path, mp3))
    finally:
        stop.set()
        thread.join()
    err = capfd.readouterr().err
    assert "Illegal Audio-MPEG-Header" in err
    assert err.count("other thread\n") == len(written)
    assert "decoder" not in caplog.text
    with pytest.raises(AudioError):
        load_audio(_zeroed(tmp_path, mp3))
    assert capfd.readouterr().err == ""


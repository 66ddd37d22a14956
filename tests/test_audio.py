"""asr.audio on real speech: formats, scaling, channels, resampling, segments, bytes, errors."""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, AudioInfo, audio_info, load_audio, load_audio_with_rate
from asr.waveform import check_rate, mono_samples, resample

UTT = "LibriSpeech/dev-4spk/8226/274371/8226-274371-0020.flac"  # 2.37 s, 16 kHz
UTT2 = "LibriSpeech/dev-4spk/5652/19215/5652-19215-0032.flac"  # 2.48 s, 16 kHz
DIGIT = "fsdd/recordings/0_george_0.wav"  # 8 kHz, 2384 samples
SPHERE_ALAW = "sphere/123_2alaw.sph"  # stereo A-law NIST, 20 kHz, 37120 frames
SPHERE_SHORTEN = "sphere/123_1pcle_shn.sph"  # shorten-compressed NIST, mono, 37120 frames

# (format, subtype, suffix, minimum correlation with the original)
FORMATS = [
    ("WAV", "PCM_16", "wav", 0.9999),
    ("FLAC", "PCM_16", "flac", 0.9999),
    ("NIST", "PCM_16", "sph", 0.9999),
    ("OGG", "VORBIS", "ogg", 0.97),
    ("MP3", "MPEG_LAYER_III", "mp3", 0.97),
]


@pytest.fixture(scope="module")
def utt(shared_data: Path) -> np.ndarray:
    wave, rate = sf.read(shared_data / UTT, dtype="float32")
    assert rate == 16000
    return wave


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _wav_bytes(payload: bytes, rate: int, channels: int, bits: int, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte-header RIFF/WAVE file built by hand (format tag 1 = PCM, 3 = float)."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("fmt", "subtype", "suffix", "min_corr"), FORMATS)
def test_format_round_trip(tmp_path, utt, fmt, subtype, suffix, min_corr):
    path = tmp_path / f"utt.{suffix}"
    sf.write(path, utt, 16000, format=fmt, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == len(utt)
    assert _corr(wave, utt) > min_corr
    assert audio_info(path) == AudioInfo(16000, len(utt), 1, len(utt) / 16000)
    from_bytes = load_audio(path.read_bytes())
    np.testing.assert_array_equal(from_bytes, wave)


def test_flac_is_exact(shared_data, utt):
    pcm, _ = sf.read(shared_data / UTT, dtype="int16")
    np.testing.assert_array_equal(load_audio(shared_data / UTT), pcm.astype(np.float32) / 32768)
    assert load_audio(str(shared_data / UTT)).shape == utt.shape


def test_file_name_that_is_not_utf8(tmp_path, shared_data):
    source = shared_data / "fsdd" / "recordings" / "3_theo_5.wav"
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.wav"))  # a Latin-1 name, legal on Linux
    odd.write_bytes(source.read_bytes())
    np.testing.assert_array_equal(load_audio(odd), load_audio(source))


def test_real_stereo_nist_alaw(shared_data):
    info = audio_info(shared_data / SPHERE_ALAW)
    assert info == AudioInfo(20000, 37120, 2, 37120 / 20000)
    native, rate = load_audio_with_rate(shared_data / SPHERE_ALAW, sample_rate=None)
    stereo, _ = sf.read(shared_data / SPHERE_ALAW, dtype="float32")
    assert rate == 20000
    np.testing.assert_allclose(native, stereo.mean(axis=1), atol=1e-7)
    wave = load_audio(shared_data / SPHERE_ALAW)  # 20 kHz -> 16 kHz
    assert len(wave) == math.ceil(37120 * 16000 / 20000)


def test_real_shorten_nist(shared_data):
    """Shorten-compressed SPHERE (decoded by asr.sphere; exactness is in test_sphere.py)."""
    path = shared_data / SPHERE_SHORTEN
    assert audio_info(path) == AudioInfo(20000, 37120, 1, 37120 / 20000)
    native, rate = load_audio_with_rate(path, sample_rate=None)
    assert rate == 20000 and native.shape == (37120,) and native.dtype == np.float32
    assert np.array_equal(native * 32768, np.round(native * 32768))  # 16-bit PCM, scaled
    np.testing.assert_array_equal(load_audio(path.read_bytes(), sample_rate=None), native)
    np.testing.assert_array_equal(load_audio(path, sample_rate=None, offset_s=0.9, duration_s=0.3),
                                  native[18000:24000])
    assert len(load_audio(path)) == math.ceil(37120 * 16000 / 20000)


# ---------------------------------------------------------------------------- channels, scaling


def test_stereo_is_averaged(tmp_path, shared_data):
    left, _ = sf.read(shared_data / UTT, dtype="int16")
    right, _ = sf.read(shared_data / UTT2, dtype="int16")
    n = min(len(left), len(right))
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left[:n], right[:n]], axis=1), 16000, subtype="PCM_16")
    assert audio_info(path).num_channels == 2
    expected = (left[:n].astype(np.float64) + right[:n]) / 2 / 32768
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-7)


def _ints(values: list[int], width: int) -> bytes:
    return b"".join(v.to_bytes(width, "little", signed=True) for v in values)


SCALING = {
    "uint8": (_wav_bytes(bytes([0, 64, 128, 192, 255]), 16000, 1, 8),
              [-1.0, -0.5, 0.0, 0.5, 127 / 128]),
    "int16": (_wav_bytes(_ints([-32768, -16384, 0, 16384, 32767], 2), 16000, 1, 16),
              [-1.0, -0.5, 0.0, 0.5, 32767 / 32768]),
    "int24": (_wav_bytes(_ints([-(2**23), -(2**22), 0, 2**22, 2**23 - 1], 3), 16000, 1, 24),
              [-1.0, -0.5, 0.0, 0.5, (2**23 - 1) / 2**23]),
    "int32": (_wav_bytes(_ints([-(2**31), -(2**30), 0, 2**30, 2**31 - 1], 4), 16000, 1, 32),
              [-1.0, -0.5, 0.0, 0.5, (2**31 - 1) / 2**31]),
    "float32": (_wav_bytes(np.array([-1, -0.5, 0, 0.5, 0.25], "<f4").tobytes(), 16000, 1, 32, 3),
                [-1.0, -0.5, 0.0, 0.5, 0.25]),
    "float64": (_wav_bytes(np.array([-1, -0.5, 0, 0.5, 0.25], "<f8").tobytes(), 16000, 1, 64, 3),
                [-1.0, -0.5, 0.0, 0.5, 0.25]),
}


@pytest.mark.parametrize("kind", list(SCALING))
def test_sample_scaling(tmp_path, kind):
    content, expected = SCALING[kind]
    path = _write(tmp_path / f"{kind}.wav", content)
    wave, rate = load_audio_with_rate(path, sample_rate=None)
    assert rate == 16000 and wave.dtype == np.float32
    np.testing.assert_allclose(wave, np.array(expected, dtype=np.float32), rtol=0, atol=1e-7)


def test_channels_that_cancel_out_in_the_mono_mix_are_warned_of(tmp_path, shared_data, caplog):
    """The mean of a recording's channels is its mono wave: where one channel is the other in
    opposite phase (these SPHERE files), that is silence, transcribed as nothing without a word.
    Now read as it is, with a warning; two channels of one recording, or of one and silence, are not."""
    caplog.set_level(logging.WARNING, logger="asr.audio")
    assert not load_audio(shared_data / "sphere/123_2pcle_shn.sph").any()  # right = -left: all zeros
    load_audio(shared_data / SPHERE_ALAW)  # A-law rounds the two apart: a faint rest
    assert caplog.messages == [
        f"{shared_data / 'sphere/123_2pcle_shn.sph'}: its channels cancel out in the mono mix, to silence: one in "
        "opposite phase? read as it is",
        f"{shared_data / SPHERE_ALAW}: its channels cancel out in the mono mix, to 48 dB below their level: one in "
        "opposite phase? read as it is"]
    caplog.clear()
    wave, rate = sf.read(shared_data / DIGIT, dtype="float32")
    for name, channels in (("same", [wave, wave]), ("one", [wave, 0 * wave]), ("half", [wave, -0.5 * wave])):
        sf.write(tmp_path / f"{name}.wav", np.stack(channels, axis=1), rate)
        load_audio(tmp_path / f"{name}.wav")
    assert caplog.messages == []


def test_float_file_values_are_not_clipped(tmp_path, shared_data, caplog):
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([1.5, -2.0, 0.25], dtype=np.float32), 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), [1.5, -2.0, 0.25])
    assert caplog.text == ""  # headroom above full scale is no mistake
    # int16 values written as floats, unscaled (transcribed as noise): read as they are, but named
    pcm, rate = sf.read(shared_data / DIGIT, dtype="int16")
    sf.write(tmp_path / "unscaled.wav", pcm.astype(np.float32), rate, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "unscaled.wav", sample_rate=None), pcm)
    peak = np.abs(pcm).max()
    assert f"unscaled.wav: float samples peak at {peak}, {20 * np.log10(peak):.0f} dB above full scale" in caplog.text


# ---------------------------------------------------------------------------- resampling


def test_resample_8k_digit_to_16k(shared_data):
    native, rate = load_audio_with_rate(shared_data / DIGIT, sample_rate=None)
    assert rate == 8000 and len(native) == 2384
    up, up_rate = load_audio_with_rate(shared_data / DIGIT)
    assert up_rate == 16000 and len(up) == 2 * 2384
    assert _corr(up[::2], native) > 0.9999  # the original samples are (nearly) kept
    assert _corr(up, librosa.resample(native, orig_sr=8000, target_sr=16000)) > 0.999
    assert _corr(resample(up, 16000, 8000), native) > 0.995  # twice low-passed at 0.95 * 4 kHz


@pytest.mark.parametrize(("freq_hz", "low", "high"), [(1000, 0.98, 1.02), (7000, 0.0, 1e-3)])
def test_resampling_is_anti_aliased(tmp_path, freq_hz, low, high):
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    path = tmp_path / f"tone{freq_hz}.wav"
    sf.write(path, tone, 16000, subtype="FLOAT")
    down = load_audio(path, sample_rate=8000)
    assert len(down) == 8000
    rms_ratio = np.sqrt(np.mean(down[200:-200] ** 2)) / np.sqrt(np.mean(tone**2))
    assert low <= rms_ratio <= high  # 7 kHz would alias to 1 kHz without the low-pass


@pytest.mark.parametrize(("orig", "new", "freq_hz", "low_db", "high_db"), [
    (44_100, 16_000, 7_000, -0.1, 0.1),  # in the pass band: was -1.8 dB
    (44_100, 16_000, 8_200, -200, -60),  # above 8 kHz, would alias to 7.8 kHz: was -8 dB
    (44_100, 16_000, 9_000, -200, -60),  # was -17 dB
    (8_000, 16_000, 3_600, -0.1, 0.1),  # 8 kHz audio (FSDD) keeps its top band: was -2.1 dB
])
def test_resampling_filter_is_flat_below_and_silent_above_the_band(orig, new, freq_hz, low_db, high_db):
    t = np.arange(orig) / orig  # 1 s
    tone = np.sin(2 * np.pi * freq_hz * t).astype(np.float32)
    out = resample(tone, orig, new)[new // 10: -new // 10]  # the filter's edges left out
    gain_db = 20 * np.log10(np.sqrt(2 * np.mean(out.astype(np.float64) ** 2)) + 1e-12)
    assert low_db <= gain_db <= high_db


@pytest.mark.parametrize("rate", [44_101, 192_001, 8_001])
def test_rates_with_no_small_ratio_resample_in_bounded_memory(tmp_path, rate):
    """44,101 Hz -> 16 kHz once built a 12 GB filter bank (one filter per output phase); the ratio
    is now approximated by a nearby fraction: the length is right within a sample, a tone keeps its pitch
    (8,001 Hz becomes 2:1, 0.0125 % off)."""
    t = np.arange(rate // 2) / rate  # 0.5 s
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"{rate}.wav"
    sf.write(path, tone, rate, subtype="FLOAT")
    wave = load_audio(path)
    assert abs(len(wave) - math.ceil(len(tone) * 16000 / rate)) <= 1
    crossings = np.flatnonzero(np.diff(np.signbit(wave[200:-200])))  # two per period
    pitch_hz = (len(crossings) - 1) / 2 / ((crossings[-1] - crossings[0]) / 16000)
    assert pitch_hz == pytest.approx(440, rel=1e-3)


def test_a_pipe_is_read_as_a_stream(tmp_path, shared_data):
    """<(cmd) or a FIFO has no size: it is read once, not refused as an empty file."""
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    data = (shared_data / DIGIT).read_bytes()
    import threading

    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    wave = load_audio(fifo)
    writer.join()
    assert np.array_equal(wave, load_audio(shared_data / DIGIT))
    writer = threading.Thread(target=lambda: fifo.write_bytes(b""))
    writer.start()
    with pytest.raises(AudioError, match=r"fifo\.wav: the stream ended before any data"):
        load_audio(fifo)
    writer.join()


# ---------------------------------------------------------------------------- segments


@pytest.mark.parametrize(("fmt", "subtype", "suffix", "min_corr"), FORMATS)
def test_offset_duration_are_exact_sample_ranges(tmp_path, utt, fmt, subtype, suffix, min_corr):
    path = tmp_path / f"utt.{suffix}"
    sf.write(path, utt, 16000, format=fmt, subtype=subtype)
    full = load_audio(path)
    segment = load_audio(path, offset_s=0.5, duration_s=1.25)
    np.testing.assert_allclose(segment, full[8000:28000], atol=1e-6)
    tail = load_audio(path.read_bytes(), offset_s=2.0)
    np.testing.assert_allclose(tail, full[32000:], atol=1e-6)


def test_segment_past_end_stops_at_end_and_resamples(shared_data):
    native = load_audio(shared_data / DIGIT, sample_rate=None)
    past_end = load_audio(shared_data / DIGIT, sample_rate=None, offset_s=0.25, duration_s=10.0)
    np.testing.assert_array_equal(past_end, native[2000:])
    huge = load_audio(shared_data / DIGIT, sample_rate=None, offset_s=0.25, duration_s=1e308)  # no overflow
    np.testing.assert_array_equal(huge, native[2000:])
    up = load_audio(shared_data / DIGIT, offset_s=0.1, duration_s=0.1)  # 800 frames at 8 kHz
    assert len(up) == 1600


@pytest.mark.parametrize("rate, channels, suffix", [(16000, 1, "flac"), (44100, 2, "flac"), (48000, 2, "ogg"),
                                                   (8000, 1, "wav")])
def test_a_long_segment_is_read_in_blocks_as_it_would_be_whole(tmp_path, shared_data, monkeypatch, rate, channels,
                                                               suffix):
    """Past READ_BLOCK_FRAMES a segment is decoded, averaged and resampled block by block (bounded
    memory); blocks of 1,000 frames give what one read and one resampling give, segments too."""
    import asr.audio

    speech = np.concatenate([load_audio(shared_data / UTT, rate), load_audio(shared_data / UTT2, rate)])  # 4.85 s
    stereo = np.stack([speech, 0.5 * speech[::-1]], axis=1)[:, :channels]  # (S, C)
    path = tmp_path / f"long.{suffix}"
    sf.write(path, stereo, rate, subtype="VORBIS" if suffix == "ogg" else "PCM_16")
    cases = [{}, {"sample_rate": None}, {"offset_s": 1.2345, "duration_s": 2.5}, {"offset_s": 3.0}]
    whole = [load_audio(path, **kwargs) for kwargs in cases]
    monkeypatch.setattr(asr.audio, "READ_BLOCK_FRAMES", 1000)
    for kwargs, expected in zip(cases, whole):
        blocks = load_audio(path, **kwargs)
        assert blocks.dtype == np.float32 and blocks.shape == expected.shape, kwargs
        np.testing.assert_allclose(blocks, expected, atol=2e-6, err_msg=str(kwargs))


def test_a_long_segment_read_in_blocks_is_checked_as_a_whole_one(tmp_path, shared_data, utt, monkeypatch, caplog):
    """NaN in a late block is counted with the others; a truncation in a late block is found; a
    float file stored unscaled is warned about."""
    import asr.audio

    bad = np.tile(utt, 2)
    bad[[30000, 30001, 40000]] = [np.nan, np.inf, np.nan]
    nan_path = tmp_path / "nan.wav"
    sf.write(nan_path, bad, 16000, subtype="FLOAT")
    cut = _cut(shared_data / UTT, tmp_path / "cut.flac", 0.8)
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.tile(utt, 2) * 32768, 16000, subtype="FLOAT")
    monkeypatch.setattr(asr.audio, "READ_BLOCK_FRAMES", 4096)
    with pytest.raises(AudioError, match=re.escape(f"{nan_path}: 3 NaN or infinite samples")):
        load_audio(nan_path)
    with pytest.raises(AudioError, match=re.escape(f"{cut}: truncated or corrupt data")):
        load_audio(cut)
    np.testing.assert_allclose(load_audio(loud, 8000), resample(np.tile(utt, 2) * 32768, 16000, 8000), rtol=1e-5,
                               atol=0.1)
    assert f"{loud}: float samples peak at" in caplog.text


def test_truncated_flac_head_is_still_readable(tmp_path, shared_data, utt):
    content = (shared_data / UTT).read_bytes()
    path = _write(tmp_path / "half.flac", content[: len(content) // 2])
    np.testing.assert_array_equal(load_audio(path, duration_s=0.5), utt[:8000])


# ---------------------------------------------------------------------------- errors


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    content = src.read_bytes()
    return _write(dst, content[: int(len(content) * fraction)])


def _flip(src: Path, dst: Path, byte: int) -> Path:
    content = bytearray(src.read_bytes())
    content[byte] ^= 0x10
    return _write(dst, bytes(content))


def _encoded(tmp_path: Path, utt: np.ndarray, fmt: str, subtype: str, suffix: str) -> Path:
    path = tmp_path / f"full.{suffix}"
    sf.write(path, utt, 16000, format=fmt, subtype=subtype)
    return path


def _float_wav(tmp_path: Path, value: float) -> Path:
    wave = np.zeros(1600, dtype=np.float32)
    wave[100] = value
    path = tmp_path / "bad_values.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path


def _low_rate(tmp_path: Path) -> Path:
    path = tmp_path / "4k.wav"
    sf.write(path, np.zeros(400, dtype=np.int16), 4000)
    return path


def _huge_rate(tmp_path: Path) -> Path:
    path = tmp_path / "huge_rate.wav"
    sf.write(path, np.zeros(400, dtype=np.int16), 16000)
    content = bytearray(path.read_bytes())
    content[24:28] = struct.pack("<I", 2**31 - 1)  # the fmt chunk's sample rate
    return _write(path, bytes(content))


def _no_frames(tmp_path: Path) -> Path:
    path = tmp_path / "no_frames.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), 16000)
    return path


ERROR_CASES: dict[str, tuple[Callable[[Path, np.ndarray, Path], Path], str]] = {
    "missing": (lambda tmp, utt, data: tmp / "nope.wav", "no such file"),
    "zero_length": (lambda tmp, utt, data: _write(tmp / "empty.wav", b""), "empty file (0 bytes)"),
    "directory": (lambda tmp, utt, data: tmp, "is a directory"),
    "unknown_format": (lambda tmp, utt, data: _write(tmp / "notes.wav", b"hello\n" * 200),
                       "unknown or unsupported audio format"),
    "truncated_wav": (lambda tmp, utt, data: _cut(_encoded(tmp, utt, "WAV", "PCM_16", "wav"),
                                                  tmp / "cut.wav", 0.5),
                      f"truncated data: header declares {37920} frames"),
    "truncated_nist": (lambda tmp, utt, data: _cut(_encoded(tmp, utt, "NIST", "PCM_16", "sph"),
                                                   tmp / "cut.sph", 0.5),
                       "truncated data: header declares 37920 frames"),
    "truncated_flac": (lambda tmp, utt, data: _cut(data / UTT, tmp / "cut.flac", 0.5),
                       "truncated or corrupt data"),
    "truncated_mp3": (lambda tmp, utt, data: _cut(
        _encoded(tmp, utt, "MP3", "MPEG_LAYER_III", "mp3"), tmp / "cut.mp3", 0.5),
                      "truncated or corrupt data: decoded"),
    "header_only_ogg": (lambda tmp, utt, data: _cut(_encoded(tmp, utt, "OGG", "VORBIS", "ogg"),
                                                    tmp / "cut.ogg", 0.005),
                        "corrupt or truncated header"),
    "zero_samples": (lambda tmp, utt, data: _no_frames(tmp), "zero samples"),
    "nan": (lambda tmp, utt, data: _float_wav(tmp, float("nan")), "1 NaN or infinite samples"),
    "inf": (lambda tmp, utt, data: _float_wav(tmp, float("inf")), "1 NaN or infinite samples"),
    "low_rate": (lambda tmp, utt, data: _low_rate(tmp), "sample rate 4000 Hz is below 8000 Hz"),
    "huge_rate": (lambda tmp, utt, data: _huge_rate(tmp), "sample rate 2147483647 Hz is above 768000 Hz"),
    "corrupt_shorten": (lambda tmp, utt, data: _flip(data / SPHERE_SHORTEN, tmp / "flip.sph", 5000),
                        "sample_checksum mismatch: header declares 55857, the samples sum to"),
    "truncated_shorten": (lambda tmp, utt, data: _cut(data / SPHERE_SHORTEN, tmp / "cut.sph", 0.5),
                          "truncated or corrupt data: decoded 17664 of the 37120 frames"),
    "wavpack_sphere": (lambda tmp, utt, data: _write(tmp / "wavpack.sph", (data / SPHERE_SHORTEN).read_bytes()
                       .replace(b"-s26 pcm,embedded-shorten-v2.00", b"-s19 pcm,embedded-wavpack       ")),
                       "unsupported compressed NIST SPHERE (sample_coding pcm,embedded-wavpack)"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_name_path_and_cause(tmp_path, shared_data, utt, case):
    build, cause = ERROR_CASES[case]
    path = build(tmp_path, utt, shared_data)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and cause in message and "\n" not in message
    if path.is_file() and path.stat().st_size > 0:  # the same cause when given the bytes
        with pytest.raises(AudioError, match=r"^<bytes>: "):
            load_audio(path.read_bytes())


def test_a_file_we_may_not_read_is_called_so(shared_data, unprivileged):
    """It was reported as "corrupt or truncated header (System error)": libsndfile's words when it
    cannot open the file at all."""
    folder, as_user = unprivileged
    closed = folder / "closed.flac"
    closed.write_bytes((shared_data / UTT).read_bytes())
    closed.chmod(0)
    with as_user():
        for read in (load_audio, audio_info):
            with pytest.raises(AudioError) as err:
                read(closed)
            assert str(err.value) == f"{closed}: cannot read file (Permission denied)", read


@pytest.mark.parametrize("data_size", [0x7FFFF000, 0x80000000, 0xFFFFFFFF], ids=["sox", "arecord", "ffmpeg"])
def test_wav_written_to_a_pipe_is_read_whole(tmp_path, shared_data, data_size):
    """A WAV file written to a pipe keeps its writer's placeholder length (`sox in.wav -t wav - | ...`
    leaves 0x7FFFF000, `arecord | ...` 0x80000000): read as truncated ("header declares 1073739776
    frames, file holds 8000") and refused, though libsndfile reads it to its end."""
    digit = shared_data / DIGIT
    content = digit.read_bytes()
    data = content.index(b"data")
    path = _write(tmp_path / "piped.wav", b"".join([b"RIFF", struct.pack("<I", (data_size + 36) % 2**32),
                                                     content[8:data + 4], struct.pack("<I", data_size),
                                                     content[data + 8:]]))
    expected, rate = sf.read(digit, dtype="float32")
    np.testing.assert_array_equal(load_audio(path, sample_rate=None), expected)
    assert audio_info(path) == audio_info(digit)
    with pytest.raises(AudioError, match="truncated data: header declares 2384 frames, file holds 2383"):
        load_audio(content[:-1])  # one byte short of a length declared in earnest is still truncated


def test_audio_info_rejects_truncated_wav_header(tmp_path, utt):
    path = _cut(_encoded(tmp_path, utt, "WAV", "PCM_16", "wav"), tmp_path / "cut.wav", 0.5)
    with pytest.raises(AudioError, match="truncated data"):
        audio_info(path)


def test_offset_beyond_end(shared_data):
    with pytest.raises(AudioError, match=r"offset 0\.400 s is beyond the end .*0\.298 s") as info:
        load_audio(shared_data / DIGIT, offset_s=0.4)
    assert str(info.value).startswith(str(shared_data / DIGIT))
    with pytest.raises(AudioError, match="beyond the end"):
        load_audio(shared_data / DIGIT, offset_s=1e308)
    with pytest.raises(AudioError, match="not a file name .it holds a NUL byte."):
        load_audio("a\0b.wav")


def test_empty_bytes():
    with pytest.raises(AudioError, match=r"^<bytes>: empty input"):
        load_audio(b"")


@pytest.mark.parametrize("kwargs", [{"offset_s": -1.0}, {"duration_s": 0.0}, {"sample_rate": 0},
                                    {"offset_s": float("nan")}, {"sample_rate": True}, {"sample_rate": 16000.5},
                                    {"sample_rate": -16000}, {"sample_rate": "16000"}])
def test_bad_arguments(shared_data, kwargs):
    with pytest.raises(ValueError):
        load_audio(shared_data / DIGIT, **kwargs)


# ---------------------------------------------------------------------------- rates, file objects, arrays


def test_rates_as_numpy_integers_or_integral_floats(shared_data):
    expected = load_audio(shared_data / DIGIT)  # 8 kHz -> 16 kHz
    for rate in (np.int64(16000), np.int32(16000), 16000.0, np.float64(16000.0)):
        wave, got = load_audio_with_rate(shared_data / DIGIT, sample_rate=rate)
        assert type(got) is int and got == 16000
        np.testing.assert_array_equal(wave, expected)
        np.testing.assert_array_equal(load_audio(shared_data / DIGIT, sample_rate=rate), expected)
    native = load_audio(shared_data / DIGIT, sample_rate=None)
    np.testing.assert_array_equal(resample(native, np.int64(8000), 16000.0), expected)
    for bad in (True, False, 16000.5, 0, -8000, float("nan"), float("inf"), "16000", None):
        with pytest.raises(ValueError, match=r"^sample_rate=.*: must be a positive integer"):
            check_rate(bad)
        with pytest.raises(ValueError, match=r"^new_rate="):
            resample(native, 8000, bad)
        with pytest.raises(ValueError, match=r"^orig_rate="):
            resample(native, bad, 16000)


def test_binary_file_objects_are_read_like_bytes(tmp_path, shared_data):
    """soundfile users pass io.BytesIO or an open file; it is read from its position to its end."""
    import io

    path = shared_data / UTT
    expected = load_audio(path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(path.read_bytes())), expected)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f, sample_rate=8000), load_audio(path, sample_rate=8000))
    with open(path, "rb") as f:
        assert audio_info(f) == audio_info(path)
    # errors name the file object: its path, or its type
    with pytest.raises(AudioError, match=r"^<BytesIO>: unknown or unsupported audio format"):
        load_audio(io.BytesIO(b"not audio at all" * 10))
    corrupt = _write(tmp_path / "corrupt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    with open(corrupt, "rb") as f, pytest.raises(AudioError, match=rf"^{re.escape(str(corrupt))}: "):
        load_audio(f)
    spent = io.BytesIO(path.read_bytes())
    spent.read()
    with pytest.raises(AudioError, match=r"^<BytesIO>: empty input \(0 bytes from its current position\)"):
        load_audio(spent)
    with open(path, encoding="latin-1") as f, pytest.raises(AudioError, match=r"text mode; open it in binary mode"):
        load_audio(f)
    closed = io.BytesIO(path.read_bytes())
    closed.close()
    with pytest.raises(AudioError, match=r"^<BytesIO>: cannot read \(I/O operation on closed file"):
        load_audio(closed)


@pytest.mark.parametrize(("kind", "dtype"), [("uint8", np.uint8), ("int16", np.int16), ("int32", np.int32),
                                             ("float32", np.float32), ("float64", np.float64)])
def test_arrays_are_scaled_as_files_are(tmp_path, kind, dtype):
    """The same samples as an array and as a WAV file give the same floats (uint8: offset binary)."""
    content, _ = SCALING[kind]
    from_file = load_audio(_write(tmp_path / f"{kind}.wav", content), sample_rate=None)
    raw = np.frombuffer(content[44:], dtype=np.dtype(dtype).newbyteorder("<"))
    np.testing.assert_array_equal(mono_samples(raw, "<array>"), from_file)
    np.testing.assert_array_equal(mono_samples(torch.from_numpy(raw.astype(dtype)), "<tensor>"), from_file)


def test_a_2d_array_is_one_recording_with_channels_on_its_short_axis(tmp_path, shared_data):
    left, _ = sf.read(shared_data / UTT, dtype="int16")
    right, _ = sf.read(shared_data / UTT2, dtype="int16")
    n = min(len(left), len(right))
    stereo = np.stack([left[:n], right[:n]], axis=1)  # (S, 2), as soundfile reads
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="PCM_16")
    from_file = load_audio(path)
    np.testing.assert_allclose(mono_samples(stereo, "<array>"), from_file, atol=1e-7)
    np.testing.assert_allclose(mono_samples(stereo.T.copy(), "<array>"), from_file, atol=1e-7)  # (2, S)
    as_float = torch.from_numpy(stereo.T / 32768.0)  # (C, S) float64, as torchaudio.load gives
    np.testing.assert_allclose(mono_samples(as_float, "<tensor>"), from_file, atol=1e-7)
    eight = np.repeat(stereo[:, :1], 8, axis=1)  # (S, 8): the most channels taken
    np.testing.assert_allclose(mono_samples(eight, "<array>"), left[:n] / 32768, atol=1e-7)
    np.testing.assert_array_equal(mono_samples(left[:n, None], "<array>"), left[:n] / 32768)  # (S, 1)


def test_arrays_that_are_not_recordings_are_audio_errors(shared_data):
    wave = load_audio(shared_data / DIGIT)
    grad = torch.from_numpy(wave).requires_grad_(True)  # a model's output, say: detached
    np.testing.assert_array_equal(mono_samples(grad, "<tensor>"), wave)
    cases = {
        "<a>: a single number (float32), not a waveform": np.float32(0.5),
        "<a>: a single number (float64), not a waveform": np.array(0.5),
        "<a>: boolean samples; give float samples in [-1, 1] or int16/int32/uint8 PCM": wave > 0,
        "<a>: complex samples (complex64)": wave.astype(np.complex64),
        "<a>: int64 samples (PCM of unknown full scale)": np.arange(100),
        "<a>: object samples (not numbers)": np.array([wave, wave[:10]], dtype=object),
        "<a>: shape (20, 2384) is not one recording of at most 8 channels": np.tile(wave[::2], (20, 1)),
        "<a>: shape (16, 16) is not one recording": np.zeros((16, 16), np.float32),
        "<a>: 3-D shape (2, 2, 2384) is not a recording; pass several recordings as a list of 1-D arrays":
            np.zeros((2, 2, 2384), np.float32),
        "<a>: zero samples (shape (0, 2))": np.zeros((0, 2), np.float32),
        "<a>: 1 NaN or infinite samples": np.concatenate([wave, [np.inf]]),
        "<a>: not audio: expected a numpy array or torch tensor, got list": [0.0, 0.1],
    }
    for message, value in cases.items():
        with pytest.raises(AudioError, match=f"^{re.escape(message)}"):
            mono_samples(value, "<a>")
    with pytest.raises(AudioError, match=r"list of 1-D arrays$"):
        mono_samples(np.zeros((16, 16), np.float32), "<a>")


def test_a_file_named_dash_is_read_from_the_file_not_standard_input(shared_data, tmp_path, monkeypatch):
    """libsndfile takes the name '-' for standard input: a file named '-' in the working folder was
    'unknown or unsupported audio format' (or a wait on a terminal)."""
    (tmp_path / "-").write_bytes((shared_data / DIGIT).read_bytes())
    monkeypatch.chdir(tmp_path)
    stdin = os.dup(0)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)  # what libsndfile would read instead: nothing
    try:
        np.testing.assert_array_equal(load_audio("-"), load_audio(shared_data / DIGIT))
    finally:
        os.dup2(stdin, 0)
        os.close(stdin)
        os.close(nothing)

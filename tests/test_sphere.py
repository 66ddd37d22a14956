"""asr.sphere / asr.shorten against sph2pipe's own test suite (../shared/data/sphere).

Oracles: ``outfile-md5.list.macosx`` holds base64 MD5s of sph2pipe's conversions of the seven input
files. Its generating script (sph2pipe's ``test_all.pl``) numbers the outputs in this order: 12
output formats (``-f sph -p``, ``-f sph -u``, ``-f sph -a``, ``-f raw -p``, ``-f raw -u``, ...) x 3
channel selections (both, ``-c 1``, ``-c 2``) x 3 ranges (whole, ``-t 0.9:1.2``,
``-s 18000:24000``) x 18 inputs (6 shorten files, 8 uncompressed ones, 2 raw inputs read twice).
``-f raw -p`` is 16-bit PCM in the CPU's byte order — big-endian on that PowerPC Mac (a
little-endian reading matches none of the sums) — and ``-f raw -u`` the µ-law codes. Each header's
``sample_count`` and ``sample_checksum`` are the second oracle.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, load_audio, load_audio_with_rate
from asr.shorten import ShortenError, decode_shorten, ulaw_outward
from asr.sphere import (ULAW_TO_PCM, SphereError, SphereReader, parse_header, read_header,
                        sample_checksum)

SHORTEN = ["123_1pcle_shn.sph", "123_2pcle_shn.sph", "123_1pcbe_shn.sph", "123_2pcbe_shn.sph",
           "123_1ulaw_shn.sph", "123_2ulaw_shn.sph"]
UNCOMPRESSED = ["123_1pcle.sph", "123_2pcle.sph", "123_1pcbe.sph", "123_2pcbe.sph",
                "123_1ulaw.sph", "123_2ulaw.sph", "123_1alaw.sph", "123_2alaw.sph"]
INPUTS = SHORTEN + UNCOMPRESSED  # test_all.pl's input order
FORMATS = ["sph -p", "sph -u", "sph -a", "raw -p", "raw -u", "raw -a"]  # the first six of twelve
HERE = [*SHORTEN, "123_2alaw.sph"]  # the files shared/data holds


def _output_name(fmt: str, channel: int, span: int, name: str) -> str:
    """test_all.pl's output file for ``-f fmt``, ``-c channel`` (0: both), range ``span``
    (0: whole file, 1: -t 0.9:1.2, 2: -s 18000:24000) and input ``name``."""
    number = FORMATS.index(fmt) * 162 + channel * 54 + span * 18 + INPUTS.index(name) + 1
    return f"{number:04d}.{fmt.split()[0]}"


@pytest.fixture(scope="module")
def sphere_dir(shared_data: Path) -> Path:
    return shared_data / "sphere"


@pytest.fixture(scope="module")
def md5s(sphere_dir: Path) -> dict[str, tuple[str, str]]:
    table = {}
    for line in (sphere_dir / "outfile-md5.list.macosx").read_text().splitlines():
        digest, output, _, source = line.split()
        table[output] = (digest, source)
    return table


def _md5(content: bytes) -> str:
    return base64.b64encode(hashlib.md5(content).digest()).decode().rstrip("=")


def _stored_pcm(path: Path) -> np.ndarray:
    """16-bit PCM (N, C) as asr.audio gets it (through asr.sphere)."""
    return SphereReader(path, read_header(path)).decode()


# ---------------------------------------------------------------------------- sph2pipe oracles


@pytest.mark.parametrize("name", HERE)
def test_pcm_matches_sph2pipe(sphere_dir, md5s, name):
    pcm = _stored_pcm(sphere_dir / name)  # (N, C)
    assert pcm.shape == (37120, 2 if "_2" in name else 1) and pcm.dtype == np.int16
    output = _output_name("raw -p", 0, 0, name)
    assert md5s[output][1] == name
    assert _md5(pcm.astype(">i2").tobytes()) == md5s[output][0]
    for span in (1, 2):  # -t 0.9:1.2 and -s 18000:24000: frames 18000..23999
        assert _md5(pcm[18000:24000].astype(">i2").tobytes()) == \
            md5s[_output_name("raw -p", 0, span, name)][0]
    if pcm.shape[1] == 2:
        for channel in (1, 2):
            assert _md5(pcm[:, channel - 1].astype(">i2").tobytes()) == \
                md5s[_output_name("raw -p", channel, 0, name)][0]


@pytest.mark.parametrize("name", HERE)
def test_load_audio_is_the_same_pcm(sphere_dir, name):
    pcm = _stored_pcm(sphere_dir / name)
    wave, rate = load_audio_with_rate(sphere_dir / name, sample_rate=None)
    assert rate == 20000
    np.testing.assert_array_equal(wave, (pcm.astype(np.float32) / 32768).mean(axis=1))
    segment = load_audio(sphere_dir / name, sample_rate=None, offset_s=0.9, duration_s=0.3)
    np.testing.assert_array_equal(segment, wave[18000:24000])


@pytest.mark.parametrize("name", ["123_1ulaw_shn.sph", "123_2ulaw_shn.sph"])
def test_ulaw_codes_match_sph2pipe(sphere_dir, md5s, name):
    data = (sphere_dir / name).read_bytes()
    header = parse_header(data[:1024])
    codes = decode_shorten(data[header.header_size:]).samples.T.astype(np.uint8)  # (N, C)
    assert _md5(codes.tobytes()) == md5s[_output_name("raw -u", 0, 0, name)][0]
    assert sample_checksum(codes) == header.checksum


@pytest.mark.parametrize("name", HERE)
def test_header_sample_count_and_checksum(sphere_dir, name):
    data = (sphere_dir / name).read_bytes()
    header = read_header(data)
    assert header.sample_count == 37120 and header.sample_rate == 20000
    if header.coding == "alaw":
        stored = np.frombuffer(data[header.header_size:], dtype=np.uint8)
    elif header.coding == "ulaw":
        stored = decode_shorten(data[header.header_size:]).samples.T.astype(np.uint8)
    else:
        stored = _stored_pcm(sphere_dir / name)
    assert sample_checksum(stored) == header.checksum
    assert header.checksum != 0 or name.startswith("123_2pc")  # stereo PCM sums to 0 mod 2**16


@pytest.mark.parametrize("name", SHORTEN[:4])
def test_python_shorten_equals_ffmpeg(sphere_dir, name):
    data = (sphere_dir / name).read_bytes()
    stream = decode_shorten(data[1024:])
    assert stream.version == 2
    np.testing.assert_array_equal(stream.samples.T, _stored_pcm(sphere_dir / name))


def test_alaw_table_equals_libsndfile(sphere_dir):
    pcm = _stored_pcm(sphere_dir / "123_2alaw.sph")
    np.testing.assert_array_equal(pcm, sf.read(sphere_dir / "123_2alaw.sph", dtype="int16")[0])


def test_uncompressed_ulaw(tmp_path, sphere_dir, md5s):
    """An uncompressed µ-law SPHERE file made from the shorten one reads as sph2pipe's PCM, as
    libsndfile reads it too; a damaged byte fails the checksum of a whole-file read."""
    data = (sphere_dir / "123_1ulaw_shn.sph").read_bytes()
    codes = decode_shorten(data[1024:]).samples.T.astype(np.uint8)
    head = data[:1024].replace(b"-s27 ulaw,embedded-shorten-v2.00", b"-s4 ulaw" + b" " * 24)
    path = tmp_path / "ulaw.sph"
    path.write_bytes(head + codes.tobytes())
    wave = load_audio(path, sample_rate=None)
    assert _md5((wave * 32768).astype(">i2").tobytes()) == \
        md5s[_output_name("raw -p", 0, 0, "123_1ulaw.sph")][0]
    np.testing.assert_array_equal(ULAW_TO_PCM[codes[:, 0]], (wave * 32768).astype(np.int16))
    np.testing.assert_array_equal(sf.read(path, dtype="int16")[0], ULAW_TO_PCM[codes[:, 0]])
    damaged = bytearray(path.read_bytes())
    damaged[5000] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(AudioError, match=r"ulaw\.sph: sample_checksum mismatch: header declares "
                                         r"50795, the samples sum to 50794$"):
        load_audio(path)
    assert len(load_audio(path, duration_s=0.5)) == 8000  # a segment is not checked


def test_ulaw_outward_tables():
    """Spot values of shorten's generated bitshift.h (``ulaw_outward[13][256]``)."""
    assert ulaw_outward(0)[:3] == (127, 0, 1) and ulaw_outward(0)[126:131] == (125, 126, 255, 254, 253)
    assert ulaw_outward(1)[:12] == (112, 114, 116, 118, 120, 122, 124, 126, 127, 0, 1, 2)
    assert ulaw_outward(1)[-8:] == (254, 252, 250, 248, 246, 244, 242, 240)
    assert ulaw_outward(8)[:11] == (2, 4, 6, 8, 10, 12, 14, 16, 17, 18, 20)
    assert ulaw_outward(12)[125:132] == (126, 127, 0, 255, 254, 253, 252)
    for shift in range(13):
        assert sorted(ulaw_outward(shift)) == list(range(256))


# ---------------------------------------------------------------------------- header variants


def test_header_variants_decode_the_same(sphere_dir):
    data = (sphere_dir / "123_1pcle_shn.sph").read_bytes()
    reference = load_audio(data, sample_rate=None)
    v11 = data.replace(b"-s26 pcm,embedded-shorten-v2.00", b"-s25 pcm,embedded-shorten-v1.1 ")
    long_header = data[:1024].replace(b"   1024\n", b"   2048\n") + b" " * 1024 + data[1024:]
    no_count = data.replace(b"sample_count -i 37120\n", b"\n" * 22)
    for variant in (v11, long_header, no_count):
        np.testing.assert_array_equal(load_audio(variant, sample_rate=None), reference)
    assert read_header(long_header).header_size == 2048
    assert read_header(no_count).sample_count is None


def test_parse_header_fields_and_errors():
    header = parse_header(b"NIST_1A\n   1024\nsample_rate -r 16000.0\nchannel_count -i 2\n"
                          b"sample_coding -s4 ULAW\nspeaker_id -s3 4k0\nend_head\n")
    assert (header.sample_rate, header.channel_count, header.coding, header.sample_n_bytes) == \
        (16000, 2, "ulaw", 1)
    assert header.fields["speaker_id"] == "4k0" and header.compression is None
    assert parse_header(b"RIFF....WAVE") is None
    with pytest.raises(SphereError, match="no end_head"):
        parse_header(b"NIST_1A\n   1024\nsample_rate -i 16000\n")
    with pytest.raises(SphereError, match="no header size"):
        parse_header(b"NIST_1A\nxx\nend_head\n")
    with pytest.raises(SphereError, match="channel_count is 'two'"):
        parse_header(b"NIST_1A\n   1024\nchannel_count -s3 two\nend_head\n")


def test_shorten_errors():
    with pytest.raises(ShortenError, match="no shorten magic"):
        decode_shorten(b"RIFF....")
    with pytest.raises(ShortenError, match="version 3"):
        decode_shorten(b"ajkg\x03\xff")
    with pytest.raises(ShortenError, match="ends inside the header"):
        decode_shorten(b"ajkg\x02\x00")

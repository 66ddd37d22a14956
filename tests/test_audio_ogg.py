"""Cut Ogg files (Vorbis, Opus): libsndfile reads them shortened without a word; asr.audio refuses one
that ends inside a page and warns about one whose last page lacks the end-of-stream flag."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, audio_info, load_audio
from asr.audio_source import _ogg_crc, ogg_end

UTTS = ["LibriSpeech/dev-4spk/8226/274371/8226-274371-0020.flac",  # 2.37 s, 16 kHz
        "LibriSpeech/dev-4spk/5652/19215/5652-19215-0032.flac"]  # 2.48 s
SUBTYPES = ["VORBIS", "OPUS"]


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> np.ndarray:
    """Real speech, 16 kHz: two utterances twice over, 9.7 s."""
    waves = [sf.read(shared_data / utt, dtype="float32")[0] for utt in UTTS]
    return np.concatenate(waves * 2)


def _pages(content: bytes) -> list[int]:
    """Where each Ogg page of ``content`` starts, walked by the lengths their segment tables give."""
    starts, at = [], 0
    while at < len(content):
        assert content[at:at + 4] == b"OggS"
        starts.append(at)
        body_at = at + 27 + content[at + 26]
        at = body_at + sum(content[at + 27:body_at])
    assert at == len(content)
    return starts


def _ogg(tmp_path: Path, wave: np.ndarray, subtype: str, name: str = "full") -> Path:
    path = tmp_path / f"{name}.{'opus' if subtype == 'OPUS' else 'ogg'}"
    sf.write(path, wave, 16000, format="OGG", subtype=subtype)
    return path


@pytest.mark.parametrize("subtype", SUBTYPES)
@pytest.mark.parametrize("num_samples", [1, 800, 37920, None], ids=["1_sample", "50ms", "2.4s", "9.7s"])
def test_whole_ogg_files_are_read_without_a_word(tmp_path, speech, caplog, subtype, num_samples):
    wave = speech[:num_samples]
    path = _ogg(tmp_path, wave, subtype)
    content = path.read_bytes()
    last = content[_pages(content)[-1]:]
    assert last[5] & 0x04  # libsndfile flags its last page the end of the stream
    assert ogg_end(path).end_of_stream and not ogg_end(path).cut
    if num_samples is None:
        assert len(_pages(content)) > 5
    assert len(load_audio(path)) == len(wave) == audio_info(path).num_frames
    assert len(load_audio(content)) == len(wave)
    assert caplog.text == ""


@pytest.mark.parametrize("subtype", SUBTYPES)
@pytest.mark.parametrize("where", ["last_page_middle", "last_byte", "earlier_page_middle", "in_header",
                                   "in_capture_pattern"])
def test_ogg_file_ending_inside_a_page_is_refused(tmp_path, speech, subtype, where):
    """libsndfile read these as shorter files (a file cut to half its bytes, to half its frames)."""
    content = _ogg(tmp_path, speech, subtype).read_bytes()
    starts = _pages(content)
    end = {"last_page_middle": (starts[-1] + len(content)) // 2, "last_byte": len(content) - 1,
           "earlier_page_middle": (starts[-3] + starts[-2]) // 2, "in_header": starts[-1] + 20,
           "in_capture_pattern": starts[-1] + 2}[where]
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(content[:end])
    assert sf.info(cut).frames > 0  # what libsndfile makes of it
    into = end - max(start for start in starts if start < end)
    what = "page header" if where.startswith("in_") else "page of"
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError) as err:
            read(cut)
        assert str(err.value).startswith(f"{cut}: truncated data: the file ends {into} bytes into an Ogg {what}")
    with pytest.raises(AudioError, match=r"^<bytes>: truncated data: the file ends"):
        load_audio(content[:end])


@pytest.mark.parametrize("subtype", SUBTYPES)
@pytest.mark.parametrize("page", [-1, -3])
def test_ogg_file_cut_at_a_page_boundary_is_read_with_a_warning(tmp_path, speech, caplog, subtype, page):
    """Its last page is whole, but not flagged the end of the stream: a cut, or a writer that leaves
    the flag out (Android recorders do), which cannot be told apart: read, and named."""
    content = _ogg(tmp_path, speech, subtype).read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(content[:_pages(content)[page]])
    frames = sf.info(cut).frames
    assert 0 < frames < len(speech)
    assert audio_info(cut).num_frames == frames and caplog.text == ""  # the header alone: no warning
    with caplog.at_level(logging.WARNING, logger="asr.audio"):
        assert len(load_audio(cut)) == frames
    assert caplog.messages == [f"{cut}: its last Ogg page is whole but not flagged the end of the stream: the "
                               "file was cut at a page boundary, or its writer leaves the flag out (as some "
                               "Android recorders do); read as it is"]


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_bytes_after_the_last_ogg_page_are_ignored(tmp_path, speech, caplog, subtype):
    """A tag appended after the last page (an ID3v1 tagger's 128 bytes): libsndfile reads past it."""
    path = _ogg(tmp_path, speech[:16000], subtype)
    tagged = tmp_path / "tagged.ogg"
    tagged.write_bytes(path.read_bytes() + b"TAG" + b"title".ljust(125, b"\0"))
    np.testing.assert_array_equal(load_audio(tagged), load_audio(path))
    assert caplog.text == ""


def test_capture_pattern_inside_the_last_page_is_not_a_cut(tmp_path, speech):
    """'OggS' in a page's data, starting a would-be page longer than the file, is not a page: the whole
    page around it (its checksum right) ends the file."""
    content = bytearray(_ogg(tmp_path, speech[:16000], "VORBIS").read_bytes())
    last = _pages(bytes(content))[-1]
    fake = last + 27 + content[last + 26] + 5  # 5 bytes into the last page's data
    content[fake:fake + 27] = b"OggS\x00" + bytes(21) + b"\xff"  # 255 segments: longer than what is left
    content[last + 22:last + 26] = bytes(4)
    content[last + 22:last + 26] = struct.pack("<I", _ogg_crc(bytes(content[last:])))
    assert ogg_end(bytes(content)).end_of_stream and not ogg_end(bytes(content)).cut
    content[fake + 30] ^= 0xFF  # the same page damaged: its checksum no longer holds, so the pattern is taken
    assert ogg_end(bytes(content)).cut.startswith("the file ends ")

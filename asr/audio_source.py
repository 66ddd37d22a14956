"""An audio source opened for reading, as :mod:`asr.audio` reads it: a path, the encoded file's
bytes or a binary file object; a pipe, character device or file object read into memory whole
(:func:`read_if_stream`); libsndfile's reader, or :class:`asr.sphere.SphereReader` for compressed
NIST SPHERE (:func:`open_audio`); and the header checked for what it reveals (:func:`check_header`:
a rate out of bounds, no frames, a WAV or NIST header declaring more frames than the file holds,
an Ogg file ending inside a page (:func:`ogg_end`), all of which libsndfile would silently shorten).
Every failure is an :class:`AudioError` whose message starts with the source's label
(:func:`source_label`).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import soundfile as sf

from asr.sphere import SphereError, SphereReader, read_header
from asr.waveform import AudioError

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
MIN_SAMPLE_RATE = 8000  # Hz; narrower-band audio is rejected
MAX_SAMPLE_RATE = 768_000  # Hz; the highest rate audio interfaces record at; a larger one is a damaged header
MAX_STREAM_BYTES = 2**31  # a pipe, device or file object is read into memory, up to this much
# The names of the audio files a folder given to ``asr transcribe`` stands for: what libsndfile and
# the SPHERE reader open (WSJ's discs: .wv1, .wv2), compared in lower case
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".sph", ".wv1", ".wv2", ".aif", ".aiff",
                  ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64")
SOUNDFILE_ERRORS = (RuntimeError, OSError, EOFError, ValueError, TypeError)  # what soundfile raises for bad data
# A WAV writer that cannot seek back to its header (writing to a pipe: `sox ... -t wav -`, `arecord |`,
# `ffmpeg ... -f wav -`) leaves a placeholder data size there, 0x7FFFF000 (sox), 0x80000000 (arecord),
# 0xFFFFFFFF (ffmpeg) or 0, and libsndfile reads to the end of the file; a size this large is taken as
# one, not as a truncation (which goes unnoticed only in WAV files of 2 GiB and more).
_WAV_SIZE_UNKNOWN = 0x7FFFF000
_OGG_MAX_PAGE_BYTES = 27 + 255 + 255 * 255  # header, segment table of 255 lacing values, 255 segments of 255 bytes
_OGG_EOS = 0x04  # header_type flag of the last page of a logical stream
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))  # each byte's bits in reverse order


def is_file_object(source: object) -> bool:
    """Whether ``source`` is a readable file object (``io.BytesIO``, ``open(path, "rb")``), not a path or bytes."""
    return hasattr(source, "read") and not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike))


def source_label(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if is_file_object(source):  # an open file is named by its path; io.BytesIO by its type, <BytesIO>
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else f"<{type(source).__name__}>"
    return str(os.fspath(source))


def read_if_stream(source: AudioSource, label: str) -> AudioSource:
    """The bytes of a binary file object (read from its position on), or of a pipe or character
    device given as a file (``<(cmd)``, a FIFO, /dev/stdin), which can be read only once and has no
    size; any other source as it is.

    Raises:
        AudioError: the stream holds more than ``MAX_STREAM_BYTES`` (/dev/zero, say) or cannot be
            read; a file object in text mode, closed, or with nothing left to read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source
    if is_file_object(source):
        if isinstance(source, io.TextIOBase):
            raise AudioError(f"{label}: a file opened in text mode; open it in binary mode ('rb')")
        try:
            data = source.read(MAX_STREAM_BYTES + 1)
        except (OSError, ValueError) as e:  # ValueError: a closed file
            raise AudioError(f"{label}: cannot read ({e})") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"{label}: read() gave {type(data).__name__}, not bytes; give a binary file object")
        return _whole_stream(bytes(data), label, "empty input (0 bytes from its current position)")
    try:
        mode = os.stat(source).st_mode
    except (OSError, ValueError):
        return source  # open_audio names the cause
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        return source
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_STREAM_BYTES + 1)
    except OSError as e:
        raise AudioError(f"{label}: cannot read ({e.strerror or e})") from None
    return _whole_stream(data, label, "the stream ended before any data")


def _whole_stream(data: bytes, label: str, empty: str) -> bytes:
    """``data``, read with a limit of ``MAX_STREAM_BYTES + 1``, once it is neither over the limit
    nor empty (``empty`` says so)."""
    if len(data) > MAX_STREAM_BYTES:
        raise AudioError(f"{label}: a stream of more than {MAX_STREAM_BYTES >> 30} GiB; give a file")
    if not data:
        raise AudioError(f"{label}: {empty}")
    return data


def _raw(source: AudioSource) -> BinaryIO:
    """A fresh binary handle on the encoded file (for our own header parsing and for soundfile)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return open(source, "rb")  # noqa: SIM115 - closed by the caller


def open_audio(source: AudioSource, label: str) -> sf.SoundFile | SphereReader:
    """Open ``source`` with soundfile (compressed SPHERE: a :class:`SphereReader`), turning every
    failure into an ``AudioError``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(f"{label}: empty input (0 bytes)")
        target: str | BinaryIO = io.BytesIO(bytes(source))
    else:
        target = label
        try:
            info = os.stat(target)
        except FileNotFoundError:
            raise AudioError(f"{label}: no such file") from None
        except OSError as e:
            raise AudioError(f"{label}: cannot access file ({e.strerror or e})") from None
        except ValueError:  # a NUL byte, e.g. from a binary file given as a file list
            raise AudioError(f"{label!r}: not a file name (it holds a NUL byte)") from None
        if stat.S_ISDIR(info.st_mode):
            raise AudioError(f"{label}: is a directory, not an audio file")
        if info.st_size == 0:
            raise AudioError(f"{label}: empty file (0 bytes)")
    try:
        header = read_header(source)
        if header is not None and (header.compression or SphereReader.supports(header)):
            return SphereReader(target if isinstance(target, str) else bytes(source), header)
    except SphereError as e:
        raise AudioError(f"{label}: {e}") from None
    try:  # a path as bytes: soundfile encodes a str as strict UTF-8, which fails on a non-UTF-8 file name
        if target == "-":  # libsndfile reads standard input for this name
            target = os.path.join(".", target)
        return sf.SoundFile(os.fsencode(target) if isinstance(target, str) else target)
    except SOUNDFILE_ERRORS as e:
        if isinstance(target, str):  # libsndfile calls a file it may not open corrupt ("System error")
            try:
                open(target, "rb").close()
            except OSError as os_error:
                raise AudioError(f"{label}: cannot read file ({os_error.strerror or os_error})") from None
        detail = libsndfile_detail(e)
        if "not recognised" in detail:
            cause = "unknown or unsupported audio format"
        elif "unimplemented" in detail:
            cause = "unsupported encoding"
        else:
            cause = "corrupt or truncated header"
        raise AudioError(f"{label}: {cause} ({detail})") from None


def check_header(f: sf.SoundFile | SphereReader, source: AudioSource, label: str) -> str | None:
    """Raise ``AudioError`` for what the header and, for WAV, NIST and Ogg, the file's length reveal;
    return a doubt that does not stop the file being read, for a caller that decodes it to warn about
    (an Ogg file whose last page is whole but not flagged the end of its stream), or None.
    """
    if f.samplerate < MIN_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if f.samplerate > MAX_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {f.samplerate} Hz is above {MAX_SAMPLE_RATE} Hz (a damaged header?)")
    declared = _declared_frames(source, f.format)
    if declared is not None and declared > f.frames:
        raise AudioError(f"{label}: truncated data: header declares {declared} frames, "
                         f"file holds {f.frames}")
    ending = ogg_end(source) if f.format == "OGG" else None
    if ending is not None and ending.cut:
        raise AudioError(f"{label}: truncated data: {ending.cut}")
    if f.frames <= 0:
        raise AudioError(f"{label}: zero samples ({f.format} file with no audio frames)")
    if ending is not None and not ending.end_of_stream:
        return ("its last Ogg page is whole but not flagged the end of the stream: the file was cut at a "
                "page boundary, or its writer leaves the flag out (as some Android recorders do)")
    return None


def libsndfile_detail(e: BaseException) -> str:
    """libsndfile's own words, without soundfile's 'Error opening <object>:' prefix."""
    detail = str(getattr(e, "error_string", None) or e).strip().rstrip(".")
    if detail.startswith("Error : "):
        detail = detail[len("Error : "):]
    if "not a regular file" in detail:  # libsndfile's MP3 reader says this of undecodable data
        detail = "libsndfile found no decodable stream"
    return detail


def _declared_frames(source: AudioSource, fmt: str) -> int | None:
    """Frames per channel the WAV/NIST header declares (libsndfile reports only what is present)."""
    if fmt in ("WAV", "WAVEX"):
        try:
            with _raw(source) as fh:
                return _riff_declared_frames(fh)
        except (OSError, struct.error):
            return None
    if fmt == "NIST":
        try:
            header = read_header(source)
        except SphereError:
            return None
        return None if header is None else header.sample_count
    return None


def _riff_declared_frames(fh: BinaryIO) -> int | None:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = 0
    for _ in range(64):  # chunks before 'data': fmt, fact, LIST, bext...
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            if block_align == 0 or size == 0 or size >= _WAV_SIZE_UNKNOWN:
                return None
            return size // block_align
        body_start = fh.tell()
        if chunk_id == b"fmt ":
            body = fh.read(min(size, 16))
            if len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
        fh.seek(body_start + size + (size & 1))
    return None


@dataclass(frozen=True)
class OggEnd:
    """How an Ogg file ends, as :func:`ogg_end` reads it from the file's last bytes."""

    cut: str  # how the file ends inside a page, in words; "" when its last page is whole
    end_of_stream: bool  # the last whole page has the end-of-stream flag (every encoder we know sets it)


def ogg_end(source: AudioSource) -> OggEnd | None:
    """How the Ogg file ``source`` ends, read from its last ``_OGG_MAX_PAGE_BYTES`` (one page at most):
    inside a page (a cut file: libsndfile reads it shortened without a word), or with a whole page
    (found by its capture pattern "OggS", version 0, the length its segment table gives and its
    CRC), flagged the end of its stream or not. Bytes after the last whole page that do not start
    another page are ignored (libsndfile reads past them: a tag appended by a tagger). None when
    the tail holds no page at all (or cannot be read): libsndfile judges such a file.

    libsndfile, oggenc (vorbis-tools 1.4.2), opusenc (opus-tools 0.2) and sox all flag the last
    page; cutting a file at a page boundary loses it, and some recorders never set it.

    >>> page = bytearray(b"OggS" + bytes([0, _OGG_EOS]) + bytes(20) + bytes([1, 3]) + b"abc")
    >>> page[22:26] = struct.pack("<I", _ogg_crc(bytes(page)))
    >>> ogg_end(bytes(page)), ogg_end(bytes(page[:-1])).cut
    (OggEnd(cut='', end_of_stream=True), 'the file ends 30 bytes into an Ogg page of 31 bytes')
    """
    try:
        tail = _tail(source, _OGG_MAX_PAGE_BYTES)
    except OSError:
        return None
    cut, cut_at = "", -1  # a page the file ends inside of, in words, and where it starts
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:
        if len(tail) < at + 27:
            cut, cut_at = f"the file ends {len(tail) - at} bytes into an Ogg page header", at
            continue
        if tail[at + 4] != 0:  # not Ogg version 0: the pattern inside a page's data
            continue
        body_at = at + 27 + tail[at + 26]
        end = body_at + sum(tail[at + 27:body_at])
        if body_at > len(tail) or end > len(tail):  # a page cut short, or the pattern inside the last page
            what = "page header" if body_at > len(tail) else f"page of {end - at} bytes"
            cut, cut_at = f"the file ends {len(tail) - at} bytes into an Ogg {what}", at
            continue
        page = bytearray(tail[at:end])
        crc, page[22:26] = struct.unpack("<I", page[22:26])[0], bytes(4)
        if _ogg_crc(bytes(page)) != crc:
            continue
        rest = tail[end:]
        if cut_at >= end:
            return OggEnd(cut, False)
        if rest and b"OggS".startswith(rest):  # cut inside the next page's capture pattern
            return OggEnd(f"the file ends {len(rest)} bytes into an Ogg page header", False)
        return OggEnd("", bool(tail[at + 5] & _OGG_EOS))
    return OggEnd(cut, False) if cut else None


def _ogg_crc(data: bytes) -> int:
    """The Ogg page checksum of ``data``: CRC-32, polynomial 0x04C11DB7, most significant bit first,
    no reflection, initial value and final XOR 0; zlib's CRC-32 is the same polynomial with bits
    reflected and ~0 around it.

    >>> hex(_ogg_crc(b"OggS"))
    '0x5fb0a94f'
    """
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _tail(source: AudioSource, size: int) -> bytes:
    """The last ``size`` bytes of the encoded file (fewer if it is shorter)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(memoryview(source)[-size:])
    with open(source, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - size))
        return fh.read()

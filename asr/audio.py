"""Audio loading: a file or its bytes → mono float32 samples at the rate you ask for.

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, MP3, uncompressed NIST SPHERE,
AIFF...), and NIST SPHERE with embedded shorten compression (the LDC's WSJ, TIMIT... discs).
SPHERE files in 16-bit PCM, µ-law or A-law, compressed or not, are read by :mod:`asr.sphere`, which
checks a file read whole against its header's ``sample_count`` and ``sample_checksum``.
Integer PCM of any width is scaled to [-1, 1) (int16 by 1/32768, 24-bit by 1/2**23, unsigned
8-bit as (x - 128) / 128); float files are returned as stored, not clipped (a warning names one
that peaks beyond ``MAX_PLAUSIBLE_PEAK``: integer values written as floats, unscaled).
Channels are averaged; a file at another rate is resampled by :func:`asr.waveform.resample`
(windowed-sinc, anti-aliased). ``offset_s``/``duration_s`` seek
to the segment and decode only it (Ogg files are decoded from the start: libsndfile's Ogg seek is
not sample-exact).

A source is a path, the encoded file's bytes (``bytes``, ``bytearray``, ``memoryview``) or a readable
binary file object (``io.BytesIO``, a file opened with ``"rb"``: its bytes are read from where it
stands). Audio already in memory is turned into mono float32 by :func:`asr.waveform.mono_samples`, with the same
integer scaling and channel averaging as files. Sample rates may be any integral number (``16000``,
``np.int64(16000)``, ``16000.0``); booleans, fractions and non-positive rates raise ``ValueError``.

Every problem with a file raises :class:`AudioError`, whose one-line message starts with the path
(``<bytes>``; for a file object its ``name``, else its type: ``<BytesIO>``) and names the cause.
Truncation is caught where the format allows it: WAV and NIST headers declare their length
(libsndfile silently shortens both to what is present, so the header is read here; the placeholder
length of a WAV file written to a pipe is not a declaration), and FLAC/MP3
return fewer frames than declared or fail to decode. A truncated Ogg file reports its shortened
length consistently and cannot be told apart from a short one.

Example:
    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.full(8000, 8192, dtype=np.int16), 8000, format="WAV")
    >>> wave = load_audio(buf.getvalue(), sample_rate=None)
    >>> wave.shape, wave.dtype, float(wave[0])
    ((8000,), dtype('float32'), 0.25)
    >>> audio_info(buf.getvalue())
    AudioInfo(sample_rate=8000, num_frames=8000, num_channels=1, duration_s=1.0)
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf

from asr.sphere import SphereError, SphereReader, read_header
from asr.waveform import AudioError, check_rate, resample

logger = logging.getLogger(__name__)

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
MIN_SAMPLE_RATE = 8000  # Hz; narrower-band audio is rejected
MAX_SAMPLE_RATE = 768_000  # Hz; the highest rate audio interfaces record at; a larger one is a damaged header
MAX_PLAUSIBLE_PEAK = 16.0  # 24 dB above full scale: a float file louder than this is warned about
MAX_STREAM_BYTES = 2**31  # a pipe, device or file object is read into memory, up to this much
_MP3_SLACK_FRAMES = 2 * 1152  # MP3 lengths without a Xing/LAME header are estimates (2 MPEG frames)
_MP3_PREROLL_FRAMES = 2 * 1152  # decoded and dropped before an MP3 segment (see _seek)
_SOUNDFILE_ERRORS = (RuntimeError, OSError, EOFError, ValueError, TypeError)
# A WAV writer that cannot seek back to its header (writing to a pipe: `sox ... -t wav -`, `arecord |`,
# `ffmpeg ... -f wav -`) leaves a placeholder data size there, 0x7FFFF000 (sox), 0x80000000 (arecord),
# 0xFFFFFFFF (ffmpeg) or 0, and libsndfile reads to the end of the file; a size this large is taken as
# one, not as a truncation (which goes unnoticed only in WAV files of 2 GiB and more).
_WAV_SIZE_UNKNOWN = 0x7FFFF000


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says."""

    sample_rate: int  # Hz, the file's native rate
    num_frames: int  # samples per channel
    num_channels: int
    duration_s: float  # num_frames / sample_rate


def audio_info(source: AudioSource) -> AudioInfo:
    """Read the header of ``source`` (a path or the file's bytes) without decoding the samples.

    Raises ``AudioError`` for everything the header reveals: missing or empty file, unknown format,
    a WAV/NIST header declaring more data than the file holds, zero frames, rate below 8000 Hz.
    Damage inside FLAC/MP3 data shows only when decoding (:func:`load_audio`).

    Raises:
        AudioError: as above.
    """
    label = _label(source)
    source = _contents_if_stream(source, label)
    with _open(source, label) as f:
        _check_header(f, source, label)
        return AudioInfo(f.samplerate, f.frames, f.channels, f.frames / f.samplerate)


def load_audio(
    source: AudioSource,
    sample_rate: int | None = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Load ``source`` as mono float32 samples ``(S,)``; see :func:`load_audio_with_rate`.

    With ``sample_rate=None`` the file's own rate is kept; call :func:`load_audio_with_rate`
    (or :func:`audio_info`) when you need to know what it was.
    """
    return load_audio_with_rate(source, sample_rate, offset_s, duration_s)[0]


def load_audio_with_rate(
    source: AudioSource,
    sample_rate: int | None = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Load a segment of ``source`` as mono float32 and return it with its sample rate.

    Args:
        source: path, the encoded file's bytes, or a readable binary file object.
        sample_rate: output rate in Hz (any integral number); ``None`` keeps the file's rate.
        offset_s: start of the segment, seconds (rounded to the nearest frame at the file's rate).
        duration_s: length of the segment, seconds; ``None`` reads to the end. A segment running
            past the end of the file stops at the end.

    Returns:
        ``(wave, rate)``: ``wave`` float32 ``(S,)``, channels averaged; ``rate`` is ``sample_rate``
        or, if that is ``None``, the file's rate. After resampling,
        ``S = ceil(frames * sample_rate / file_rate)``.

    Raises:
        AudioError: missing, empty, truncated or corrupt file; unknown or unsupported format;
            zero samples; NaN/inf samples; file rate below 8000 Hz; offset beyond the end.
        ValueError: a negative ``offset_s``, a non-positive ``duration_s``, a ``sample_rate`` that
            is not a positive integer (see :func:`check_rate`).
    """
    if sample_rate is not None:
        sample_rate = check_rate(sample_rate)
    if not offset_s >= 0.0:
        raise ValueError(f"offset_s must be >= 0, got {offset_s!r}")
    if duration_s is not None and not duration_s > 0.0:
        raise ValueError(f"duration_s must be > 0 or None, got {duration_s!r}")
    label = _label(source)
    source = _contents_if_stream(source, label)
    with _open(source, label) as f:
        _check_header(f, source, label)
        file_rate, total = f.samplerate, f.frames
        start = round(offset_s * file_rate) if offset_s * file_rate < total else total  # (1e308 s: no overflow)
        if start >= total:
            raise AudioError(f"{label}: offset {offset_s:.3f} s is beyond the end of the audio "
                             f"({total / file_rate:.3f} s)")
        wanted = total - start
        if duration_s is not None and duration_s * file_rate < wanted:
            wanted = round(duration_s * file_rate)
        if wanted <= 0:
            raise AudioError(f"{label}: zero samples: duration {duration_s} s rounds to 0 frames "
                             f"at {file_rate} Hz")
        try:
            _seek(f, start)
            data = f.read(wanted, dtype="float32", always_2d=True)  # (S, C)
        except SphereError as e:
            raise AudioError(f"{label}: {e}") from None
        except _SOUNDFILE_ERRORS as e:
            raise AudioError(f"{label}: truncated or corrupt data ({_detail(e)})") from None
        slack = _MP3_SLACK_FRAMES if f.format == "MP3" else 0
        if len(data) < wanted - slack:
            raise AudioError(f"{label}: truncated or corrupt data: decoded {len(data)} of {wanted} "
                             f"frames from frame {start} (header declares {total})")
        if len(data) < wanted:
            logger.debug("path=%s frames_short=%d (MP3 length estimate)", label, wanted - len(data))
    if len(data) == 0:
        raise AudioError(f"{label}: zero samples decoded")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # (S,)
    if not np.isfinite(wave).all():
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise AudioError(f"{label}: {bad} NaN or infinite samples")
    peak = float(np.abs(wave).max())
    if peak > MAX_PLAUSIBLE_PEAK:
        logger.warning("%s: float samples peak at %.5g, %.0f dB above full scale (1.0): integer PCM values "
                       "stored as floats? read as they are", label, peak, 20 * np.log10(peak))
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sample_rate is None or sample_rate == file_rate:
        return wave, file_rate
    return resample(wave, file_rate, sample_rate), sample_rate


# ---------------------------------------------------------------------------- helpers


def _seek(f: sf.SoundFile, start: int) -> None:
    """Position ``f`` at frame ``start`` so that the next read is sample-exact.

    libsndfile 1.2.2 seeks Ogg/Vorbis wrongly inside the last pages of a file (thousands of
    frames off; cf. libsndfile issue #885), so Ogg is decoded from the start and the head discarded. An MP3 seek
    lands without the bit reservoir of the previous frame (first ~300 samples off by up to 1e-3),
    so MP3 seeks two MPEG frames early and discards them.
    """
    if start == 0:
        return
    skip = 0
    if f.format == "OGG":
        skip = start
    elif f.format == "MP3":
        skip = min(start, _MP3_PREROLL_FRAMES)
    if start > skip:
        f.seek(start - skip)
    while skip > 0:
        got = len(f.read(min(skip, 1 << 16), dtype="float32", always_2d=True))
        if got == 0:
            return  # truncated: the caller sees the short read
        skip -= got


def is_file_object(source: object) -> bool:
    """Whether ``source`` is a readable file object (``io.BytesIO``, ``open(path, "rb")``), not a path or bytes."""
    return hasattr(source, "read") and not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike))


def _label(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if is_file_object(source):  # an open file is named by its path; io.BytesIO by its type, <BytesIO>
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else f"<{type(source).__name__}>"
    return str(os.fspath(source))


def _contents_if_stream(source: AudioSource, label: str) -> AudioSource:
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
        return source  # _open names the cause
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


def _open(source: AudioSource, label: str) -> sf.SoundFile | SphereReader:
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
        return sf.SoundFile(os.fsencode(target) if isinstance(target, str) else target)
    except _SOUNDFILE_ERRORS as e:
        if isinstance(target, str):  # libsndfile calls a file it may not open corrupt ("System error")
            try:
                open(target, "rb").close()
            except OSError as os_error:
                raise AudioError(f"{label}: cannot read file ({os_error.strerror or os_error})") from None
        detail = _detail(e)
        if "not recognised" in detail:
            cause = "unknown or unsupported audio format"
        elif "unimplemented" in detail:
            cause = "unsupported encoding"
        else:
            cause = "corrupt or truncated header"
        raise AudioError(f"{label}: {cause} ({detail})") from None


def _check_header(f: sf.SoundFile, source: AudioSource, label: str) -> None:
    if f.samplerate < MIN_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if f.samplerate > MAX_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {f.samplerate} Hz is above {MAX_SAMPLE_RATE} Hz (a damaged header?)")
    declared = _declared_frames(source, f.format)
    if declared is not None and declared > f.frames:
        raise AudioError(f"{label}: truncated data: header declares {declared} frames, "
                         f"file holds {f.frames}")
    if f.frames <= 0:
        raise AudioError(f"{label}: zero samples ({f.format} file with no audio frames)")


def _detail(e: BaseException) -> str:
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



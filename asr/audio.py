"""Audio loading: a file or its bytes → mono float32 samples at the rate you ask for.

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, MP3, uncompressed NIST SPHERE,
AIFF...), and NIST SPHERE with embedded shorten compression (the LDC's WSJ, TIMIT... discs).
SPHERE files in 16-bit PCM, µ-law or A-law, compressed or not, are read by :mod:`asr.sphere`, which
checks a file read whole against its header's ``sample_count`` and ``sample_checksum``.
Integer PCM of any width is scaled to [-1, 1) (int16 by 1/32768, 24-bit by 1/2**23, unsigned
8-bit as (x - 128) / 128); float files are returned as stored, not clipped.
Channels are averaged; a file at another rate is resampled with
``torchaudio.functional.resample`` (windowed-sinc, anti-aliased). ``offset_s``/``duration_s`` seek
to the segment and decode only it (Ogg files are decoded from the start: libsndfile's Ogg seek is
not sample-exact).

A source is a path, the encoded file's bytes (``bytes``, ``bytearray``, ``memoryview``) or a readable
binary file object (``io.BytesIO``, a file opened with ``"rb"``: its bytes are read from where it
stands). Audio already in memory is turned into mono float32 by :func:`mono_samples`, with the same
integer scaling and channel averaging as files. Sample rates may be any integral number (``16000``,
``np.int64(16000)``, ``16000.0``); booleans, fractions and non-positive rates raise ``ValueError``.

Every problem with a file raises :class:`AudioError`, whose one-line message starts with the path
(``<bytes>``; for a file object its ``name``, else its type: ``<BytesIO>``) and names the cause.
Truncation is caught where the format allows it: WAV and NIST headers declare their length
(libsndfile silently shortens both to what is present, so the header is read here), and FLAC/MP3
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
import math
import numbers
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

from asr.sphere import SphereError, SphereReader, read_header

logger = logging.getLogger(__name__)

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
MIN_SAMPLE_RATE = 8000  # Hz; narrower-band audio is rejected
MAX_SAMPLE_RATE = 768_000  # Hz; the highest rate audio interfaces record at; a larger one is a damaged header
# torchaudio's "kaiser_best" filter (64 zero crossings, Kaiser window): flat to 0.95 of the lower
# Nyquist frequency and over 100 dB down beyond it. torchaudio's default (Hann, 6 zero crossings)
# let a 8.2 kHz tone through at -8 dB from 44.1 kHz to 16 kHz (aliased to 7.8 kHz) and took
# 2-3 dB off 3.6-3.8 kHz in 8 kHz audio; this one costs 2-5x its time, ~1-2 ms per second of audio.
RESAMPLING_FILTER = dict(resampling_method="sinc_interp_kaiser", lowpass_filter_width=64,
                         rolloff=0.9475937167399596, beta=14.769656459379492)
MAX_RESAMPLE_TERMS = 2000  # largest reduced rate ratio resampled exactly (44.1 kHz -> 16 kHz: 160/441)
MAX_STREAM_BYTES = 2**31  # a pipe, device or file object is read into memory, up to this much
MAX_CHANNELS = 8  # an in-memory array with a longer short axis is not one multichannel recording
PCM_SCALES = {np.dtype(np.int8): 2**7, np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31}  # full scale
_MP3_SLACK_FRAMES = 2 * 1152  # MP3 lengths without a Xing/LAME header are estimates (2 MPEG frames)
_MP3_PREROLL_FRAMES = 2 * 1152  # decoded and dropped before an MP3 segment (see _seek)
_SOUNDFILE_ERRORS = (RuntimeError, OSError, EOFError, ValueError, TypeError)


class AudioError(Exception):
    """An audio file cannot be used; the message is ``"<path or <bytes>>: cause"`` on one line."""


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
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sample_rate is None or sample_rate == file_rate:
        return wave, file_rate
    return resample(wave, file_rate, sample_rate), sample_rate


def check_rate(rate: object, name: str = "sample_rate") -> int:
    """``rate`` as an ``int`` if it is a positive integral number (``np.int64(8000)`` and
    ``16000.0`` are); ``name`` is the argument named in the error.

    Raises:
        ValueError: a bool, a non-number, a fraction, NaN/inf, or zero or less.

    >>> check_rate(np.int64(8000)), check_rate(16000.0)
    (8000, 16000)
    """
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise ValueError(f"{name}={rate!r}: must be a positive integer (Hz)")
    if not (math.isfinite(rate) and rate == int(rate) and rate > 0):
        raise ValueError(f"{name}={rate!r}: must be a positive integer (Hz)")
    return int(rate)


def mono_samples(samples: np.ndarray | torch.Tensor, label: str) -> np.ndarray:
    """An in-memory recording (numpy array or torch tensor, any device) as mono float32 ``(S,)``.

    Integer PCM is scaled as files are: int8, int16, int32 by their full scale (1/32768 for int16),
    uint8 as offset binary ((x - 128) / 128); floats are kept as they are. A 2-D array is one
    recording of several channels, the short axis (at most ``MAX_CHANNELS``), which are averaged:
    ``(S, C)`` as soundfile reads, ``(C, S)`` as torchaudio loads. A tensor that requires grad is
    detached.

    Raises:
        AudioError: ``"label: cause"``: not an array, a scalar, bool/complex/object or wider integer
            samples (int64: ambiguous scale), more than 2 dimensions or no short axis of at most
            ``MAX_CHANNELS`` (several recordings go as a list of 1-D arrays), no samples, NaN/inf.

    >>> stereo = np.array([[16384, -16384], [8192, 8192], [0, 16384]], dtype=np.int16)  # (S, C)
    >>> mono_samples(stereo, "<array>").tolist(), mono_samples(stereo.T, "<array>").tolist()
    ([0.0, 0.25, 0.25], [0.0, 0.25, 0.25])
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu()
        if samples.dtype == torch.bfloat16:  # numpy has no bfloat16
            samples = samples.float()
        samples = samples.numpy()
    elif isinstance(samples, np.generic):  # a numpy scalar: refused below as a 0-d array
        samples = np.asarray(samples)
    elif not isinstance(samples, np.ndarray):
        raise AudioError(f"{label}: not audio: expected a numpy array or torch tensor, got {type(samples).__name__}")
    if samples.ndim == 0:
        raise AudioError(f"{label}: a single number ({samples.dtype}), not a waveform")
    dtype = samples.dtype
    if dtype in PCM_SCALES:
        wave = samples.astype(np.float32) / PCM_SCALES[dtype]
    elif dtype == np.uint8:
        wave = (samples.astype(np.float32) - 128.0) / 128.0
    elif dtype.kind == "f":
        wave = samples.astype(np.float32, copy=False)
    else:
        what = {"b": "boolean samples", "c": f"complex samples ({dtype})",
                "i": f"{dtype} samples (PCM of unknown full scale)",
                "u": f"{dtype} samples (PCM of unknown full scale)"}.get(dtype.kind, f"{dtype} samples (not numbers)")
        raise AudioError(f"{label}: {what}; give float samples in [-1, 1] or int16/int32/uint8 PCM")
    if wave.size == 0:
        raise AudioError(f"{label}: zero samples (shape {samples.shape})")
    if wave.ndim == 2:
        channels_axis = int(np.argmin(wave.shape))
        if wave.shape[channels_axis] > MAX_CHANNELS or wave.shape[0] == wave.shape[1]:
            raise AudioError(f"{label}: shape {wave.shape} is not one recording of at most {MAX_CHANNELS} "
                             "channels (S, C) or (C, S); pass several recordings as a list of 1-D arrays")
        wave = wave.mean(axis=channels_axis, dtype=np.float32)  # (S,)
    elif wave.ndim > 2:
        raise AudioError(f"{label}: {wave.ndim}-D shape {wave.shape} is not a recording; pass several "
                         "recordings as a list of 1-D arrays")
    if not np.isfinite(wave).all():
        raise AudioError(f"{label}: {int(np.count_nonzero(~np.isfinite(wave)))} NaN or infinite samples")
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Anti-aliased resampling of float32 ``wave`` (S,) → (ceil(S * new_rate / orig_rate),).

    A thin wrapper over ``torchaudio.functional.resample`` with :data:`RESAMPLING_FILTER`. Its
    filter bank has one filter per output phase, ``new_rate / gcd`` of them, each about
    ``orig_rate / gcd`` taps wide: 12 GB for 44,101 Hz to 16 kHz. A ratio whose reduced terms exceed ``MAX_RESAMPLE_TERMS`` (no common rate's does) is
    replaced by the nearest fraction with smaller terms: a shift of pitch and speed by at most a few
    hundredths of a percent (8,001 Hz taken as 8,000 Hz: 0.0125 %), far below speed perturbation's.

    Raises:
        ValueError: ``orig_rate`` or ``new_rate`` is not a positive integer (see :func:`check_rate`).

    >>> resample(np.ones(44101, dtype=np.float32), 44101, 16000).shape  # 16,000 samples ± 1
    (16000,)
    """
    orig_rate, new_rate = check_rate(orig_rate, "orig_rate"), check_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return wave
    ratio = Fraction(new_rate, orig_rate)
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_TERMS:
        ratio = ratio.limit_denominator(MAX_RESAMPLE_TERMS // max(1, math.ceil(ratio)))
    wave_t = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))  # (S,)
    return taf.resample(wave_t, ratio.denominator, ratio.numerator, **RESAMPLING_FILTER).numpy()  # (S',)


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


def _is_file_object(source: object) -> bool:
    return hasattr(source, "read") and not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike))


def _label(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if _is_file_object(source):  # an open file is named by its path; io.BytesIO by its type, <BytesIO>
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
    if _is_file_object(source):
        if isinstance(source, io.TextIOBase):
            raise AudioError(f"{label}: a file opened in text mode; open it in binary mode ('rb')")
        try:
            data = source.read(MAX_STREAM_BYTES + 1)
        except (OSError, ValueError) as e:  # ValueError: a closed file
            raise AudioError(f"{label}: cannot read ({e})") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"{label}: read() gave {type(data).__name__}, not bytes; give a binary file object")
        if len(data) > MAX_STREAM_BYTES:
            raise AudioError(f"{label}: a stream of more than {MAX_STREAM_BYTES >> 30} GiB; give a file")
        if not data:
            raise AudioError(f"{label}: empty input (0 bytes from its current position)")
        return bytes(data)
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
    if len(data) > MAX_STREAM_BYTES:
        raise AudioError(f"{label}: a stream of more than {MAX_STREAM_BYTES >> 30} GiB; give a file")
    if not data:
        raise AudioError(f"{label}: the stream ended before any data")
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
            size = os.stat(target).st_size
        except FileNotFoundError:
            raise AudioError(f"{label}: no such file") from None
        except OSError as e:
            raise AudioError(f"{label}: cannot access file ({e.strerror or e})") from None
        except ValueError:  # a NUL byte, e.g. from a binary file given as a file list
            raise AudioError(f"{label!r}: not a file name (it holds a NUL byte)") from None
        if os.path.isdir(target):
            raise AudioError(f"{label}: is a directory, not an audio file")
        if size == 0:
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
            if block_align == 0 or size in (0, 0xFFFFFFFF):  # unset by a streaming writer
                return None
            return size // block_align
        body_start = fh.tell()
        if chunk_id == b"fmt ":
            body = fh.read(min(size, 16))
            if len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
        fh.seek(body_start + size + (size & 1))
    return None


def pcm16_chunks(source: BinaryIO, samples_per_chunk: int) -> Iterator[np.ndarray]:
    """Float32 chunks (N,) in [-1, 1) of raw 16-bit little-endian mono PCM read from a binary
    stream (e.g. ``sys.stdin.buffer``) until it ends; each holds at most ``samples_per_chunk``.

    >>> import io
    >>> [c.tolist() for c in pcm16_chunks(io.BytesIO(b"\\x00\\x40\\x00\\xc0\\x01"), 1)]
    [[0.5], [-0.5]]
    """
    rest = b""
    while True:
        data = source.read(2 * samples_per_chunk)
        if not data:
            return
        data, rest = rest + data, b""
        if len(data) % 2:  # an odd byte waits for its other half
            data, rest = data[:-1], data[-1:]
        if data:
            yield np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0

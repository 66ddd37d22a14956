"""Audio loading: a file or its bytes → mono float32 samples at the rate you ask for.

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, MP3, uncompressed NIST SPHERE,
AIFF...), and NIST SPHERE with embedded shorten compression (the LDC's WSJ, TIMIT... discs).
SPHERE files in 16-bit PCM, µ-law or A-law, compressed or not, are read by :mod:`asr.sphere`, which
checks a file read whole against its header's ``sample_count`` and ``sample_checksum``.
Integer PCM of any width is scaled to [-1, 1) (int16 by 1/32768, 24-bit by 1/2**23, unsigned
8-bit as (x - 128) / 128); float files are returned as stored, not clipped (a warning names one
that peaks beyond ``MAX_PLAUSIBLE_PEAK``: integer values written as floats, unscaled).
Channels are averaged; a file at another rate is resampled by :func:`asr.waveform.resample`
(windowed-sinc, anti-aliased); a segment longer than ``READ_BLOCK_FRAMES`` is decoded, averaged and
resampled block by block, so that memory holds little more than the result. ``offset_s``/``duration_s`` seek
to the segment and decode only it (Ogg files are decoded from the start: libsndfile's Ogg seek is
not sample-exact).

A source is a path, the encoded file's bytes (``bytes``, ``bytearray``, ``memoryview``) or a readable
binary file object (``io.BytesIO``, a file opened with ``"rb"``: its bytes are read from where it
stands). Audio already in memory is turned into mono float32 by :func:`asr.waveform.mono_samples`, with the same
integer scaling and channel averaging as files. Sample rates may be any integral number (``16000``,
``np.int64(16000)``, ``16000.0``); booleans, fractions and non-positive rates raise ``ValueError``.

Opening a source, reading a stream whole and checking the header are :mod:`asr.audio_source`'s.
Every problem with a file raises :class:`AudioError`, whose one-line message starts with the path
(``<bytes>``; for a file object its ``name``, else its type: ``<BytesIO>``) and names the cause;
what libsndfile's MP3 decoder prints to standard error meanwhile is caught and logged instead
(:mod:`asr.decoder_stderr`, which says when that cannot be done).
Truncation is caught where the format allows it: WAV and NIST headers declare their length
(libsndfile silently shortens both to what is present, so the header is read here; the placeholder
length of a WAV file written to a pipe is not a declaration), FLAC/MP3
return fewer frames than declared or fail to decode, and an Ogg file (Vorbis, Opus) that ends inside
a page is cut (its last 64 KiB are read: :func:`asr.audio_source.ogg_end`). An Ogg file that ends
with a whole page not flagged the end of its stream is read with a warning: it was cut at a page
boundary, or written by a recorder that leaves the flag out.

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

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from asr.audio_source import (MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SOUNDFILE_ERRORS, AudioSource, check_header,
                              is_file_object, libsndfile_detail, open_audio, read_if_stream, source_label)
from asr.decoder_stderr import decoder_notes
from asr.read_notes import collected
from asr.sphere import SphereError, SphereReader
from asr.waveform import AudioError, StreamResampler, check_rate, resample

__all__ = ["MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "AudioError", "AudioInfo", "AudioSource", "audio_headers",
           "audio_info", "is_file_object", "load_audio", "load_audio_with_rate", "resample", "warn_loud_floats"]

logger = collected(logging.getLogger(__name__))  # per-item warnings: asr.read_notes

MAX_PLAUSIBLE_PEAK = 16.0  # 24 dB above full scale: a float file louder than this is warned about
MAX_USABLE_PEAK = 1e12  # 240 dB above: refused. A 25 ms window's power spectrum of 48 kHz audio overflows
# float32 from about 1e16 (fsdd digits x1e20 gave NaN features, so an empty transcript and status 0)
MIN_MIX_DB = -20.0  # a mono mix this far below its channels' level is warned about: they cancel out (the
# mean of two unrelated channels is 3 dB below them, of one channel and silence 3 dB too)
READ_BLOCK_FRAMES = 1 << 22  # 87 s at 48 kHz: a longer segment is decoded and resampled block by block
_MP3_SLACK_FRAMES = 2 * 1152  # MP3 lengths without a Xing/LAME header are estimates (2 MPEG frames)
_MP3_PREROLL_FRAMES = 2 * 1152  # decoded and dropped before an MP3 segment (see _seek)


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
    label = source_label(source)
    source = read_if_stream(source, label)
    with decoder_notes(label), open_audio(source, label) as f:
        check_header(f, source, label)
        return AudioInfo(f.samplerate, f.frames, f.channels, f.frames / f.samplerate)


def audio_headers(paths: Iterable[str]) -> dict[str, AudioInfo | str]:
    """Each audio file of ``paths`` (read once, however often it is listed) to its header
    (:func:`audio_info`), or to the message of the ``AudioError`` that reading it raised."""
    headers: dict[str, AudioInfo | str] = {}
    for path in dict.fromkeys(paths):
        try:
            headers[path] = audio_info(path)
        except AudioError as e:
            headers[path] = str(e)
    return headers


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
            zero samples; NaN/inf samples or float samples beyond ``MAX_USABLE_PEAK``; file rate
            below 8000 Hz; offset beyond the end.
        ValueError: a negative ``offset_s``, a non-positive ``duration_s``, a ``sample_rate`` that
            is not a positive integer (see :func:`check_rate`).
    """
    if sample_rate is not None:
        sample_rate = check_rate(sample_rate)
    if not offset_s >= 0.0:
        raise ValueError(f"offset_s must be >= 0, got {offset_s!r}")
    if duration_s is not None and not duration_s > 0.0:
        raise ValueError(f"duration_s must be > 0 or None, got {duration_s!r}")
    label = source_label(source)
    source = read_if_stream(source, label)
    with decoder_notes(label), open_audio(source, label) as f:  # (no logging inside: see decoder_notes)
        doubt = check_header(f, source, label)
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
            decoded = _decode(f, wanted, sample_rate)
        except SphereError as e:
            raise AudioError(f"{label}: {e}") from None
        except SOUNDFILE_ERRORS as e:
            raise AudioError(f"{label}: truncated or corrupt data ({libsndfile_detail(e)})") from None
        slack = _MP3_SLACK_FRAMES if f.format == "MP3" else 0
        if decoded.frames < wanted - slack:
            raise AudioError(f"{label}: truncated or corrupt data: decoded {decoded.frames} of {wanted} "
                             f"frames from frame {start} (header declares {total})")
    if doubt:
        logger.warning("%s: %s; read as it is", label, doubt)
    if decoded.frames < wanted:
        logger.debug("path=%s frames_short=%d (MP3 length estimate)", label, wanted - decoded.frames)
    if decoded.frames == 0:
        raise AudioError(f"{label}: zero samples decoded")
    if decoded.nonfinite:
        raise AudioError(f"{label}: {decoded.nonfinite} NaN or infinite samples")
    if decoded.peak > MAX_USABLE_PEAK:
        raise AudioError(f"{label}: float samples peak at {decoded.peak:.3g}, {20 * np.log10(decoded.peak):.0f} dB above "
                         "full scale (1.0): far too loud to be audio, its features would not be finite")
    if decoded.peak > MAX_PLAUSIBLE_PEAK:
        warn_loud_floats(label, decoded.peak)
    if decoded.mix_db < MIN_MIX_DB:
        logger.warning("%s: its channels cancel out in the mono mix, %s: one in opposite phase? read as it is", label,
                       "to silence" if decoded.mix_db == -np.inf else f"to {-decoded.mix_db:.0f} dB below their level")
    if sample_rate is None or sample_rate == decoded.rate:
        return decoded.wave, decoded.rate
    return resample(decoded.wave, decoded.rate, sample_rate), sample_rate


def warn_loud_floats(label: str, peak: float) -> None:
    """Log that the float samples of ``label`` peak at ``peak`` (above ``MAX_PLAUSIBLE_PEAK``)."""
    logger.warning("%s: float samples peak at %.5g, %.0f dB above full scale (1.0): integer PCM values "
                   "stored as floats? read as they are", label, peak, 20 * np.log10(peak))


@dataclass(frozen=True)
class _Decoded:
    wave: np.ndarray  # (S,) mono float32 at ``rate``
    rate: int  # Hz
    frames: int  # frames decoded from the file (fewer than asked at a truncation)
    nonfinite: int  # NaN or infinite samples among them
    peak: float  # the largest finite magnitude
    mix_db: float  # energy of the mono mix over the channels' mean energy, dB (0 for one channel; -inf: cancelled)


def _decode(f: sf.SoundFile | SphereReader, wanted: int, sample_rate: int | None) -> _Decoded:
    """The next ``wanted`` frames of ``f``, channels averaged. Up to ``READ_BLOCK_FRAMES`` are read
    at once and kept at the file's rate; a longer segment (not SPHERE, which is checked read whole)
    is read, averaged and resampled to ``sample_rate`` block by block (:class:`StreamResampler`,
    equal to :func:`resample` of the whole to 1e-6), so that memory holds the output and one block,
    not all channels and the resampler's buffers: 10 minutes of 48 kHz stereo took 1.0 GB more.
    """
    whole = wanted <= READ_BLOCK_FRAMES or isinstance(f, SphereReader)
    resampler = None if whole else StreamResampler(f.samplerate, sample_rate or f.samplerate)
    pieces, decoded, bad, peak = [], 0, 0, 0.0
    mix_energy = channel_energy = 0.0  # of several channels: does their mean keep the sound?
    while decoded < wanted:
        data = f.read(wanted if whole else min(wanted - decoded, READ_BLOCK_FRAMES), dtype="float32",
                      always_2d=True)  # (n, C)
        decoded += len(data)
        mono = np.ascontiguousarray(data[:, 0] if data.shape[1] == 1 else data.mean(axis=1), dtype=np.float32)  # (n,)
        finite = np.isfinite(mono)
        nonfinite = len(mono) - int(np.count_nonzero(finite))
        bad += nonfinite
        peak = max(peak, float(np.abs(mono[finite] if nonfinite else mono).max(initial=0.0)))  # (no copy when clean)
        if data.shape[1] > 1 and not bad:
            mix_energy += float(np.dot(mono, mono))
            channel_energy += float(np.einsum("nc,nc->", data, data)) / data.shape[1]
        if not bad:  # (one with NaN is refused: nothing more is kept)
            pieces.append(mono if whole else resampler.accept(mono))
        if whole or len(data) == 0:
            break
    if resampler is not None and not bad:
        pieces.append(resampler.finish())
    wave = pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    mix_db = 10 * np.log10(mix_energy / channel_energy) if mix_energy > 0 else -np.inf if channel_energy > 0 else 0.0
    return _Decoded(wave, f.samplerate if whole else sample_rate or f.samplerate, decoded, bad, peak, float(mix_db))


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

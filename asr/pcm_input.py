"""Raw PCM arriving on a byte stream, as ``asr stream -`` reads standard input: interleaved frames of
16-bit integer or 32-bit float samples read chunk by chunk and averaged to mono (:class:`PcmReader`),
and the audio file formats told apart from raw samples by their first bytes (:func:`container_on`).

Chunks at another rate than the model's go through :class:`asr.waveform.StreamResampler`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from asr.audio import MAX_PLAUSIBLE_PEAK, warn_loud_floats
from asr.waveform import AudioError

PCM_FORMATS = {"s16le": (np.dtype("<i2"), 32768.0), "f32le": (np.dtype("<f4"), 1.0)}  # sample type, full scale
MAX_RAW_CHANNELS = 64  # interleaved channels of raw input: more than any audio interface records at once


def describe_pcm(sample_format: str, channels: int) -> str:
    """The raw input in words.

    >>> describe_pcm("s16le", 1), describe_pcm("f32le", 2), describe_pcm("s16le", 6)
    ('16-bit mono', '32-bit float stereo', '16-bit 6-channel')
    """
    width = {"s16le": "16-bit", "f32le": "32-bit float"}[sample_format]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}-channel")
    return f"{width} {layout}"


class PcmReader:
    """Raw little-endian PCM read from a binary stream (e.g. ``sys.stdin.buffer``) until it ends, as
    mono float32 chunks (:meth:`chunks`): ``channels`` interleaved channels, averaged as
    :mod:`asr.audio` averages a file's; s16le scaled to [-1, 1) by 1/32768, f32le kept as it is
    (warned about once, as a file is, when its samples peak above ``MAX_PLAUSIBLE_PEAK``).

    A read that ends inside a frame (part of a sample, or of the channels of one instant) keeps
    those bytes for the next read. A part frame at the very end cannot be heard: it is dropped and
    counted in ``trailing_bytes``, for the caller to tell.

    Args:
        source: the byte stream, read with ``read(n)`` until it returns nothing.
        channels: interleaved channels, 1 to ``MAX_RAW_CHANNELS``.
        sample_format: a key of ``PCM_FORMATS``: "s16le" or "f32le".
        label: names the stream in error messages ("-" for standard input).
        sample_rate: Hz; if given, errors give the position in seconds too.

    Attributes:
        frames_read: frames (samples of each channel) yielded so far.
        trailing_bytes: once the stream has ended, the bytes of the part frame dropped at its end.

    Raises:
        ValueError: ``channels`` out of range or an unknown ``sample_format``.

    >>> import io
    >>> stereo = np.array([16384, -16384, 8192, 8192, 0], dtype="<i2").tobytes()  # 2.5 frames
    >>> reader = PcmReader(io.BytesIO(stereo), channels=2)
    >>> [c.tolist() for c in reader.chunks(1)], reader.frames_read, reader.trailing_bytes, reader.layout()
    ([[0.0], [0.25]], 2, 2, 's16le, 2 channels: 4 bytes a frame')
    """

    def __init__(self, source: BinaryIO, channels: int = 1, sample_format: str = "s16le", label: str = "-",
                 sample_rate: int | None = None):
        if sample_format not in PCM_FORMATS:
            raise ValueError(f"sample_format={sample_format!r}: must be one of {', '.join(PCM_FORMATS)}")
        if not 1 <= channels <= MAX_RAW_CHANNELS:
            raise ValueError(f"channels={channels!r}: must be from 1 to {MAX_RAW_CHANNELS}")
        self.source, self.channels, self.sample_format = source, channels, sample_format
        self.label, self.sample_rate = label, sample_rate
        self.dtype, self.full_scale = PCM_FORMATS[sample_format]
        self.frame_bytes = self.dtype.itemsize * channels
        self.frames_read = self.trailing_bytes = 0
        self._warned_loud = False

    def layout(self) -> str:
        """The frame layout in words, for messages about bytes: ``'f32le, mono: 4 bytes a frame'``."""
        layout = "mono" if self.channels == 1 else f"{self.channels} channels"
        return f"{self.sample_format}, {layout}: {self.frame_bytes} bytes a frame"

    def chunks(self, frames_per_chunk: int) -> Iterator[np.ndarray]:
        """Mono float32 chunks (N,), 1 to ``frames_per_chunk`` frames each, until the stream ends.

        Raises:
            AudioError: ``"label: cause"``: an f32le sample that is NaN or infinite (not float PCM?),
                named by its position; the frames before it are yielded first.
        """
        rest = b""
        while True:
            data = self.source.read(self.frame_bytes * frames_per_chunk)
            if not data:
                self.trailing_bytes = len(rest)
                return
            data = rest + data
            whole = len(data) - len(data) % self.frame_bytes
            data, rest = data[:whole], data[whole:]  # the part of a frame waits for the rest of it
            if not data:
                continue
            frames = np.frombuffer(data, dtype=self.dtype).reshape(-1, self.channels)  # (N, C)
            wave = frames.astype(np.float32)  # (N, C)
            if self.full_scale != 1.0:  # (f32le is not divided: s16le read as f32le holds signalling NaNs, which warn)
                wave /= np.float32(self.full_scale)
            finite = np.isfinite(wave).all(axis=1)  # (N,)
            good = len(wave) if finite.all() else int(np.argmin(finite))  # frames before the first bad one
            if good:
                self.frames_read += good
                mono = wave[:good, 0] if self.channels == 1 else wave[:good].mean(axis=1)  # (N,)
                loud_floats_unnamed = self.full_scale == 1.0 and not self._warned_loud and good == len(wave)
                peak = float(np.abs(mono).max()) if loud_floats_unnamed else 0.0  # (a NaN after them says more)
                if peak > MAX_PLAUSIBLE_PEAK:
                    warn_loud_floats(self.label, peak)
                    self._warned_loud = True
                yield mono
            if good < len(wave):
                raise AudioError(self._bad_sample(wave[good]))

    def _bad_sample(self, frame: np.ndarray) -> str:
        """The message for a frame (C,) holding NaN or inf, at ``frames_read``."""
        channel = int(np.argmin(np.isfinite(frame)))
        where = f"sample {self.frames_read}"
        if self.channels > 1:
            where += f" of channel {channel + 1} of {self.channels}"
        at = f"{self.frames_read / self.sample_rate:.3f} s in, " if self.sample_rate else ""
        offset = self.frames_read * self.frame_bytes + channel * self.dtype.itemsize
        value = {np.inf: "inf", -np.inf: "-inf"}.get(float(frame[channel]), "NaN")
        return f"{self.label}: {where} ({at}byte {offset}) is {value}, not audio (is the input {self.sample_format}?)"


_CONTAINERS = {b"RIFF": "WAV", b"RIFX": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"NIST_1A": "SPHERE"}


def container_on(stream) -> str | None:
    """The audio file format whose header begins ``stream`` (read without consuming it: what one
    read of it brought), or None."""
    head = stream.peek(8) if hasattr(stream, "peek") else b""
    kind = next((kind for magic, kind in _CONTAINERS.items() if head.startswith(magic)), None)
    return kind or ("MP3" if _starts_with_mpeg_frames(head) else None)


_MPEG_KBPS = {  # bitrate index 1-14, by (MPEG-1?, layer)
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_KBPS[False, 3] = _MPEG_KBPS[False, 2]
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version id


def _mpeg_frame(head: bytes, at: int) -> tuple[tuple[int, int, int], int] | None:
    """The (version, layer, sample rate) and byte length of the MPEG audio frame whose header is at
    ``head[at:]``, or None if none is (free-format and reserved values count as none)."""
    if len(head) < at + 4 or head[at] != 0xFF or head[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[at + 1] >> 3) & 3, 4 - ((head[at + 1] >> 1) & 3)
    bitrate, rate, padding = head[at + 2] >> 4, (head[at + 2] >> 2) & 3, (head[at + 2] >> 1) & 1
    if version == 1 or layer == 4 or not 1 <= bitrate <= 14 or rate == 3 or head[at + 3] & 3 == 2:
        return None
    bps, hz = 1000 * _MPEG_KBPS[version == 3, layer][bitrate - 1], _MPEG_RATES[version][rate]
    if layer == 1:
        length = (12 * bps // hz + padding) * 4
    else:
        length = (144 if layer == 2 or version == 3 else 72) * bps // hz + padding
    return (version, layer, hz), length


def _starts_with_mpeg_frames(head: bytes) -> bool:
    """Whether ``head`` starts with two MPEG audio frames in a row (an MP3 file without an ID3 tag):
    one header alone is too often a pair of raw PCM samples (-1 is ``ff ff``).

    >>> mp3 = bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(413)  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417 bytes
    >>> _starts_with_mpeg_frames(mp3 * 2), _starts_with_mpeg_frames(mp3), _starts_with_mpeg_frames(b"\\xff\\xff" * 400)
    (True, False, False)
    """
    first = _mpeg_frame(head, 0)
    if first is None:
        return False
    second = _mpeg_frame(head, first[1])
    return second is not None and second[0] == first[0]

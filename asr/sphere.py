"""NIST SPHERE: header parsing, decoding (shorten included) and ``sample_checksum`` validation.

The LDC's corpora (WSJ, TIMIT CDs, Switchboard, Fisher...) mostly ship *embedded shorten*:
``sample_coding pcm,embedded-shorten-v2.00`` (or ``-v1.1``...), a 1024-byte text header followed by
a shorten stream. :class:`SphereReader` reads them with pip-installable software only:

* 16-bit PCM shorten through FFmpeg's ``nistsphere`` demuxer and ``shorten`` decoder (PyAV);
* µ-law shorten (``ulaw,embedded-shorten-*``, which FFmpeg does not decode) with the pure-Python
  decoder in :mod:`asr.shorten`;
* uncompressed 16-bit PCM, µ-law and A-law directly, so that every SPHERE file gets the same
  checks (libsndfile reads the same samples but checks no checksum). Other codings (8-bit or
  24/32-bit PCM...) are left to libsndfile.

µ-law and A-law are expanded to 16-bit PCM with the G.711 tables sph2pipe uses. Every file read
whole is checked against its header: ``sample_count`` frames, and ``sample_checksum``, NIST's
16-bit checksum (``sp_compute_short_checksum``/``sp_compute_char_checksum`` in the SPHERE
library): the sum, modulo 2**16, of all stored samples of all channels — 16-bit PCM samples read as
unsigned 16-bit integers, µ-law and A-law samples as their unsigned byte codes.

Example:
    >>> header = parse_header(b"NIST_1A\\n   1024\\nsample_rate -i 16000\\nchannel_count -i 1\\n"
    ...                       b"sample_coding -s26 pcm,embedded-shorten-v2.00\\nend_head\\n")
    >>> header.sample_rate, header.coding, header.compression, header.sample_count
    (16000, 'pcm', 'shorten', None)
    >>> sample_checksum(np.array([-1, 2, 3], dtype=np.int16))  # 65535 + 2 + 3 mod 65536
    4
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.shorten import TYPE_AU1, TYPE_AU2, ShortenError, decode_shorten

SphereSource = str | os.PathLike | bytes


class SphereError(ValueError):
    """A SPHERE file cannot be decoded; the message gives the cause (the caller adds the path)."""


@dataclass(frozen=True)
class SphereHeader:
    """What a SPHERE header declares (``fields`` holds every field, typed by its ``-i/-r/-s``)."""

    fields: dict[str, Any]
    header_size: int  # bytes before the sample data
    sample_rate: int  # Hz; 0 when the header has none
    channel_count: int
    sample_count: int | None  # frames (samples per channel); None when undeclared
    sample_n_bytes: int  # bytes per stored sample before compression
    coding: str  # 'pcm', 'ulaw' or 'alaw'
    compression: str | None  # 'shorten', 'wavpack', 'shortpack' or None
    checksum: int | None  # declared sample_checksum

    @property
    def sample_coding(self) -> str:
        return str(self.fields.get("sample_coding", "pcm"))


def parse_header(head: bytes) -> SphereHeader | None:
    """Parse the start of a file; ``None`` if it is not SPHERE (no ``NIST_1A`` magic).

    Raises:
        SphereError: a SPHERE header without its size line or its ``end_head`` line.
    """
    if not head.startswith(b"NIST_1A"):
        return None
    lines = head.decode("latin-1").split("\n")
    try:
        header_size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise SphereError("corrupt NIST SPHERE header: no header size on line 2") from None
    if not 16 <= header_size <= 1 << 20:
        raise SphereError(f"corrupt NIST SPHERE header: header size {header_size}")
    fields: dict[str, Any] = {}
    for line in lines[2:]:
        parts = line.strip().split(None, 2)
        if parts and parts[0] == "end_head":
            break
        if len(parts) != 3 or not parts[1].startswith("-") or parts[0].startswith(";"):
            continue  # blank, comment or malformed line: libsndfile and sph2pipe skip them too
        name, kind, value = parts
        try:
            fields[name] = int(value) if kind == "-i" else float(value) if kind == "-r" else value
        except ValueError:
            fields[name] = value
    else:
        raise SphereError(f"corrupt or truncated NIST SPHERE header: no end_head in the first "
                          f"{len(head)} bytes")
    coding_field = str(fields.get("sample_coding", "pcm")).lower()
    tokens = [t.strip() for t in coding_field.split(",")]
    coding = "ulaw" if tokens[0] in ("ulaw", "mu-law", "mulaw", "pculaw") else tokens[0]
    compression = next((c for c in ("shorten", "wavpack", "shortpack")
                        if any(t.startswith(f"embedded-{c}") for t in tokens[1:])), None)
    if str(fields.get("sample_byte_format", "")).startswith("shortpack"):  # the oldest scheme
        compression = "shortpack"
    return SphereHeader(
        fields=fields, header_size=header_size, sample_rate=_int_field(fields, "sample_rate", 0),
        channel_count=_int_field(fields, "channel_count", 1),
        sample_count=_int_field(fields, "sample_count", None),
        sample_n_bytes=_int_field(fields, "sample_n_bytes", 1 if coding in ("ulaw", "alaw") else 2),
        coding=coding, compression=compression,
        checksum=_int_field(fields, "sample_checksum", None))


def _int_field(fields: dict[str, Any], name: str, default: int | None) -> Any:
    value = fields.get(name, default)
    if isinstance(value, float) and value.is_integer():  # 'sample_rate -r 16000.0'
        value = int(value)
    if value is not None and not (isinstance(value, int) and value >= 0):
        raise SphereError(f"corrupt NIST SPHERE header: {name} is {value!r}")
    return value


def read_header(source: SphereSource) -> SphereHeader | None:
    """:func:`parse_header` of a path or bytes (``None`` for non-SPHERE or unreadable files)."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:1024])
            if head.startswith(b"NIST_1A") and _declared_size(head) > 1024:
                head = bytes(source[:_declared_size(head)])
        else:
            with open(source, "rb") as fh:
                head = fh.read(1024)
                if head.startswith(b"NIST_1A") and _declared_size(head) > 1024:
                    head += fh.read(_declared_size(head) - 1024)
    except OSError:
        return None
    return parse_header(head)


def _declared_size(head: bytes) -> int:
    try:
        return min(int(head[8:16].split(b"\n")[0]), 1 << 20)
    except ValueError:
        return 0


def sample_checksum(stored: np.ndarray) -> int:
    """NIST's ``sample_checksum`` of stored samples: int16 PCM, or uint8 µ-law/A-law codes."""
    values = stored.view(np.uint16) if stored.dtype == np.int16 else stored.astype(np.uint8)
    return int(values.astype(np.int64).sum() % 65536)


def verify(header: SphereHeader, stored: np.ndarray) -> None:
    """Check stored samples ``(N, C)`` against ``sample_count``, ``channel_count`` and the checksum.

    Raises:
        SphereError: naming the declared and the found value.
    """
    frames, channels = stored.shape
    if channels != header.channel_count:
        raise SphereError(f"decoded {channels} channels, header declares {header.channel_count}")
    if header.sample_count is not None and frames != header.sample_count:
        raise SphereError(f"truncated or corrupt data: decoded {frames} of the "
                          f"{header.sample_count} frames the header declares")
    if header.checksum is not None:
        found = sample_checksum(stored)
        if found != header.checksum:
            raise SphereError(f"sample_checksum mismatch: header declares {header.checksum}, "
                              f"the samples sum to {found}")


def decode_compressed(data: bytes, header: SphereHeader) -> np.ndarray:
    """Decode an embedded-shorten SPHERE file's bytes to its stored samples ``(N, C)`` — int16
    for PCM, uint8 codes for µ-law — and :func:`verify` them.

    Raises:
        SphereError: unsupported compression or coding, PyAV missing, undecodable or truncated
            data, ``sample_count``/``sample_checksum`` mismatch.
    """
    if header.compression != "shorten":
        raise SphereError(f"unsupported compressed NIST SPHERE (sample_coding "
                          f"{header.sample_coding}); only embedded shorten is decoded")
    if header.coding == "pcm" and header.sample_n_bytes == 2:
        stored = _ffmpeg_shorten(data, header.channel_count)  # (N, C) int16
    elif header.coding == "ulaw" and header.sample_n_bytes == 1:
        try:
            stream = decode_shorten(data[header.header_size:])
        except ShortenError as e:
            raise SphereError(f"truncated or corrupt data ({e})") from None
        if stream.file_type not in (TYPE_AU1, TYPE_AU2):
            raise SphereError(f"the header says µ-law but the shorten stream holds internal type "
                              f"{stream.file_type}")
        stored = stream.samples.T.astype(np.uint8)  # (N, C)
    else:
        raise SphereError(f"unsupported NIST SPHERE sample_coding {header.sample_coding} with "
                          f"{header.sample_n_bytes}-byte samples")
    verify(header, stored)
    return stored


def to_pcm(stored: np.ndarray, coding: str) -> np.ndarray:
    """Stored samples → 16-bit linear PCM: PCM as is, µ-law/A-law codes through G.711 tables."""
    if coding == "ulaw":
        return ULAW_TO_PCM[stored]
    if coding == "alaw":
        return ALAW_TO_PCM[stored]
    return stored


def _ffmpeg_shorten(data: bytes, channels: int) -> np.ndarray:
    """FFmpeg's decoding of a ``pcm,embedded-shorten`` SPHERE file: int16 ``(N, C)``."""
    try:
        import av
    except ImportError:
        raise SphereError("decoding shorten-compressed SPHERE needs PyAV: pip install av") from None
    chunks = []
    try:
        with av.open(io.BytesIO(data), format="nistsphere") as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                array = frame.to_ndarray()  # planar: (C, n); packed: (1, n * C)
                chunks.append(array.T if frame.format.is_planar else array.reshape(-1, channels))
    except (av.error.FFmpegError, IndexError) as e:
        raise SphereError(f"truncated or corrupt shorten data (FFmpeg: {e})") from None
    if not chunks:
        raise SphereError("truncated or corrupt data: FFmpeg decoded no samples")
    stored = np.concatenate(chunks)
    if stored.dtype != np.int16:
        raise SphereError(f"FFmpeg decoded {stored.dtype} samples, expected int16")
    return stored  # (N, C)


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """G.711 code → 16-bit linear, as sph2pipe and libsndfile expand: µ-law with bias 0x84
    (±32124), A-law with the 0x55 toggle (±32256)."""
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
    ulaw = np.where(u & 0x80, -magnitude, magnitude)
    a = code ^ 0x55
    segment, mantissa = (a >> 4) & 7, (a & 0x0F) << 4
    magnitude = np.where(segment == 0, mantissa + 8,
                         (mantissa + 0x108) << np.maximum(segment - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return ulaw.astype(np.int16), alaw.astype(np.int16)


ULAW_TO_PCM, ALAW_TO_PCM = _g711_tables()
_UNCOMPRESSED = {("pcm", 2), ("ulaw", 1), ("alaw", 1)}  # (coding, sample_n_bytes) read here


class SphereReader:
    """A soundfile-like reader (``samplerate``, ``frames``, ``channels``, ``format``, ``seek``,
    ``read``) over a SPHERE file: shorten-compressed (decoded whole at the first read), or
    uncompressed 16-bit PCM, µ-law or A-law (read segment by segment).

    ``read`` returns float32 ``(n, C)``: 16-bit PCM / 32768, as libsndfile scales it. A read of a
    whole file is :func:`verify`-ed (a shorten file is always read whole).

    Raises:
        SphereError: in the constructor, an unsupported coding or a file shorter than its
            ``sample_count``; in ``read``, what :func:`decode_compressed` or :func:`verify` raise.
    """

    format = "NIST"

    @staticmethod
    def supports(header: SphereHeader) -> bool:
        return header.compression == "shorten" or (
            header.compression is None and (header.coding, header.sample_n_bytes) in _UNCOMPRESSED)

    def __init__(self, source: SphereSource, header: SphereHeader):
        if header.compression and header.compression != "shorten":
            raise SphereError(f"unsupported compressed NIST SPHERE (sample_coding "
                              f"{header.sample_coding}); only embedded shorten is decoded")
        if not self.supports(header):
            raise SphereError(f"unsupported NIST SPHERE sample_coding {header.sample_coding} "
                              f"with {header.sample_n_bytes}-byte samples")
        if header.channel_count < 1:
            raise SphereError(f"channel_count is {header.channel_count}")
        self.source, self.header = source, header
        self.samplerate = header.sample_rate
        self.channels = header.channel_count
        self._frame_bytes = header.channel_count * header.sample_n_bytes
        self._stored: np.ndarray | None = None  # a compressed file's samples, once decoded
        self._pos = 0
        if header.compression:
            count = header.sample_count
            self.frames = count if count is not None else len(self._decoded())
            return
        size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
        available = max(size - header.header_size, 0) // self._frame_bytes
        if header.sample_count is not None and header.sample_count > available:
            raise SphereError(f"truncated data: header declares {header.sample_count} frames, "
                              f"file holds {available}")
        self.frames = header.sample_count if header.sample_count is not None else available

    def __enter__(self) -> SphereReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stored = None

    def _decoded(self) -> np.ndarray:
        if self._stored is None:
            if isinstance(self.source, bytes):
                data = self.source
            else:
                with open(self.source, "rb") as fh:
                    data = fh.read()
            self._stored = decode_compressed(data, self.header)
        return self._stored

    def _read_stored(self, start: int, count: int) -> np.ndarray:
        """Stored samples ``(count, C)`` from frame ``start``."""
        if self.header.compression:
            return self._decoded()[start:start + count]
        offset, size = self.header.header_size + start * self._frame_bytes, count * self._frame_bytes
        if isinstance(self.source, bytes):
            raw = self.source[offset:offset + size]
        else:
            with open(self.source, "rb") as fh:
                fh.seek(offset)
                raw = fh.read(size)
        if self.header.coding != "pcm":
            dtype = np.dtype(np.uint8)
        else:
            dtype = np.dtype(">i2" if self.header.fields.get("sample_byte_format") == "10" else "<i2")
        stored = np.frombuffer(raw[:len(raw) - len(raw) % self._frame_bytes], dtype=dtype)
        return stored.reshape(-1, self.channels).astype(np.int16 if dtype.kind == "i" else np.uint8)

    def decode(self) -> np.ndarray:
        """The whole file as 16-bit PCM ``(N, C)``, verified."""
        self.seek(0)
        stored = self._read_stored(0, self.frames)
        if not self.header.compression:
            verify(self.header, stored)
        return to_pcm(stored, self.header.coding)

    def seek(self, frame: int) -> None:
        self._pos = frame

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        count = max(0, min(frames, self.frames - self._pos))
        stored = self._read_stored(self._pos, count)  # (n, C)
        if not self.header.compression and self._pos == 0 and count == self.frames:
            verify(self.header, stored)
        self._pos += len(stored)
        return to_pcm(stored, self.header.coding).astype(np.float32) / np.float32(32768)

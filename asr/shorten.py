"""A pure-Python decoder for Tony Robinson's *shorten* (versions 0-2), as embedded in NIST SPHERE.

FFmpeg (through PyAV) decodes 16-bit PCM shorten quickly and is what :mod:`asr.sphere` uses for
it; its shorten decoder writes no samples for the µ-law internal types, though, and its SPHERE
demuxer refuses ``ulaw,embedded-shorten-*``. This module fills that gap (and serves as an
independent check of the PCM path in the tests). It is slow — about 0.2 s per 100,000
samples — which is fine for the rare µ-law files and would not be for a corpus.

The bitstream (Robinson 1994, CUED/F-INFENG/TR.156; shorten 2.x ``shorten.c``, ``vario.c``):
``"ajkg"``, a version byte, then MSB-first Rice codes: ``uvar(k)`` is a unary count of 0-bits
ended by a 1-bit, followed by ``k`` low bits; ``var(k)`` zig-zags ``uvar(k + 1)`` to a signed value;
``ulong()`` is ``uvar(uvar(2))``. A header (file type, channels, block size, LPC order, mean
window, skipped bytes) is followed by commands: per-channel blocks predicted by fixed polynomials
(DIFF0-3), quantized LPC (QLPC) or zeros, plus BLOCKSIZE, BITSHIFT, VERBATIM and QUIT.

Example:
    >>> stream = decode_shorten(bytes.fromhex("616a6b670200"))
    Traceback (most recent call last):
    ...
    asr.shorten.ShortenError: shorten stream ends inside the header (at bit 0 of 8)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

TYPE_AU1, TYPE_S8, TYPE_U8, TYPE_S16HL, TYPE_U16HL, TYPE_S16LH, TYPE_U16LH = range(7)
TYPE_ULAW, TYPE_AU2, TYPE_AU3, TYPE_ALAW = range(7, 11)
TYPE_NAMES = {TYPE_AU1: "ulaw (AU1)", TYPE_S8: "s8", TYPE_U8: "u8", TYPE_S16HL: "s16be",
              TYPE_U16HL: "u16be", TYPE_S16LH: "s16le", TYPE_U16LH: "u16le", TYPE_ULAW: "ulaw",
              TYPE_AU2: "ulaw (AU2)", TYPE_AU3: "alaw (AU3)", TYPE_ALAW: "alaw"}
SUPPORTED_TYPES = (TYPE_AU1, TYPE_S8, TYPE_U8, TYPE_S16HL, TYPE_S16LH, TYPE_AU2)
FN_DIFF0, FN_DIFF1, FN_DIFF2, FN_DIFF3, FN_QUIT, FN_BLOCKSIZE, FN_BITSHIFT, FN_QLPC, FN_ZERO, \
    FN_VERBATIM = range(10)
_LPCQUANT = 5  # bits of the QLPC coefficients' fixed point
_NWRAP = 3  # samples of history the fixed predictors need
_NEGATIVE_ULAW_ZERO = 0x7F


class ShortenError(ValueError):
    """The stream is not shorten, is damaged or truncated, or uses an unsupported feature."""


@dataclass(frozen=True)
class ShortenStream:
    """A decoded stream: ``samples`` (C, N) int32, as the file stores them (µ-law types: the
    µ-law bytes; PCM: signed values; ``u8``: 0..255), and the internal file type."""

    file_type: int
    version: int
    samples: np.ndarray  # (C, N) int32


class _Bits:
    """MSB-first bit reader over a '0'/'1' string (``str.find`` makes unary codes fast)."""

    def __init__(self, data: bytes):
        self.bits = bin(int.from_bytes(data, "big") | (1 << 8 * len(data)))[3:] if data else ""
        self.pos = 0
        self.where = "header"

    def uvar(self, nbin: int) -> int:
        end = self.bits.find("1", self.pos)
        if end < 0 or end + 1 + nbin > len(self.bits):
            raise ShortenError(f"shorten stream ends inside the {self.where} "
                               f"(at bit {self.pos} of {len(self.bits)})")
        high = end - self.pos
        self.pos = end + 1 + nbin
        return (high << nbin) | int(self.bits[end + 1:self.pos], 2) if nbin else high

    def var(self, nbin: int) -> int:
        u = self.uvar(nbin + 1)
        return ~(u >> 1) if u & 1 else u >> 1

    def ulong(self) -> int:
        return self.uvar(self.uvar(2))


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def decode_shorten(data: bytes) -> ShortenStream:
    """Decode a shorten stream (starting at its ``ajkg`` magic) to ``(C, N)`` integer samples.

    Raises:
        ShortenError: no magic, version above 2, truncated or malformed stream, an unsupported
            internal type (``ulaw``/``alaw`` linear-coded types 7, 9, 10 and ``u16``).
    """
    if data[:4] != b"ajkg" or len(data) < 5:
        raise ShortenError("no shorten magic 'ajkg' at the start of the stream")
    version = data[4]
    if version > 2:
        raise ShortenError(f"shorten version {version} is not supported (0-2 are)")
    r = _Bits(data[5:])
    ftype = r.ulong() if version > 0 else r.uvar(4)
    nchan = r.ulong() if version > 0 else r.uvar(0)
    if ftype not in SUPPORTED_TYPES:
        raise ShortenError(f"shorten internal type {ftype} ({TYPE_NAMES.get(ftype, 'unknown')}) "
                           "is not supported")
    if not 1 <= nchan <= 8:
        raise ShortenError(f"shorten header declares {nchan} channels")
    blocksize, maxnlpc, nmean = 256, 0, (0 if version < 2 else 4)
    if version > 0:
        blocksize, maxnlpc, nmean = r.ulong(), r.ulong(), r.ulong()
        for _ in range(r.ulong()):  # nskip bytes of the original header
            r.uvar(7)
    if not 0 < blocksize <= 65535 or maxnlpc > 1024 or nmean > 32768:
        raise ShortenError(f"implausible shorten header: blocksize {blocksize}, "
                           f"maxnlpc {maxnlpc}, nmean {nmean}")
    nwrap = max(_NWRAP, maxnlpc)
    lpcqoffset = (1 << _LPCQUANT) if version > 1 else 0
    mean0 = 0x80 if ftype == TYPE_U8 else 0
    offsets = [[mean0] * max(1, nmean) for _ in range(nchan)]
    history = [[0] * nwrap for _ in range(nchan)]
    out: list[list[np.ndarray]] = [[] for _ in range(nchan)]
    bitshift, chan = 0, 0
    r.where = "audio data"
    while True:
        cmd = r.uvar(2)
        if cmd == FN_QUIT:
            break
        if cmd == FN_BLOCKSIZE:
            blocksize = r.ulong() if version > 0 else r.uvar(blocksize.bit_length() - 1)
            if not 0 < blocksize <= 65535:
                raise ShortenError(f"shorten block size {blocksize} at bit {r.pos}")
        elif cmd == FN_BITSHIFT:
            bitshift = r.uvar(2)
            if bitshift > 31:
                raise ShortenError(f"shorten bit shift {bitshift} at bit {r.pos}")
        elif cmd == FN_VERBATIM:
            for _ in range(r.uvar(5)):
                r.uvar(8)
        elif cmd in (FN_DIFF0, FN_DIFF1, FN_DIFF2, FN_DIFF3, FN_QLPC, FN_ZERO):
            block = _decode_block(r, cmd, version, blocksize, history[chan], offsets[chan],
                                  nmean, bitshift, lpcqoffset)
            if nmean > 0:  # running mean of the last nmean blocks
                total = (0 if version < 2 else blocksize // 2) + sum(block)
                mean = _cdiv(total, blocksize)
                offsets[chan] = offsets[chan][1:] + [mean if version < 2 else mean << bitshift]
            history[chan] = (history[chan] + block)[-nwrap:]
            out[chan].append(_fix_bitshift(np.array(block, dtype=np.int64), bitshift, ftype))
            chan = (chan + 1) % nchan
        else:
            raise ShortenError(f"unknown shorten command {cmd} at bit {r.pos}")
    if chan != 0:
        raise ShortenError(f"shorten stream ends after channel {chan} of {nchan} in a block")
    samples = np.stack([np.concatenate(c) if c else np.zeros(0, np.int64) for c in out])
    return ShortenStream(ftype, version, samples.astype(np.int32))  # (C, N)


def _decode_block(r: _Bits, cmd: int, version: int, blocksize: int, hist: list[int],
                  offset: list[int], nmean: int, bitshift: int, lpcqoffset: int) -> list[int]:
    """One channel's block of ``blocksize`` samples, before the bit shift is undone."""
    if cmd == FN_ZERO:
        return [0] * blocksize
    resn = r.uvar(3) - (1 if version == 0 else 0)
    if resn < 0 or resn > 31:
        raise ShortenError(f"shorten residual size {resn} at bit {r.pos}")
    if nmean == 0:
        coffset = offset[0]
    else:
        total = (0 if version < 2 else nmean // 2) + sum(offset)
        coffset = _cdiv(total, nmean)
        if version >= 2 and bitshift:
            coffset = (coffset >> (bitshift - 1)) >> 1
    x = list(hist)  # history first: x[k - 1] is the previous sample of x[k]
    var = r.var
    if cmd == FN_DIFF0:
        x += [var(resn) + coffset for _ in range(blocksize)]
    elif cmd == FN_DIFF1:
        for _ in range(blocksize):
            x.append(var(resn) + x[-1])
    elif cmd == FN_DIFF2:
        for _ in range(blocksize):
            x.append(var(resn) + 2 * x[-1] - x[-2])
    elif cmd == FN_DIFF3:
        for _ in range(blocksize):
            x.append(var(resn) + 3 * (x[-1] - x[-2]) + x[-3])
    else:  # FN_QLPC
        nlpc = r.uvar(2)
        if nlpc > len(hist):
            raise ShortenError(f"shorten LPC order {nlpc} above the declared maximum at bit {r.pos}")
        coefs = [var(_LPCQUANT) for _ in range(nlpc)]
        x = [v - coffset for v in x]
        for _ in range(blocksize):
            pred = lpcqoffset + sum(c * x[-1 - j] for j, c in enumerate(coefs))
            x.append(var(resn) + (pred >> _LPCQUANT))
        if coffset:
            return [v + coffset for v in x[len(hist):]]
    return x[len(hist):]


def _fix_bitshift(block: np.ndarray, bitshift: int, ftype: int) -> np.ndarray:
    if ftype in (TYPE_AU1, TYPE_AU2):  # ranks back to µ-law bytes
        table = np.array(ulaw_outward(bitshift), dtype=np.int64)
        if ftype == TYPE_AU1:
            return table[np.clip(block + 128, 0, 255)]
        index = np.clip(np.where(block >= 0, block + 128, block + 129), 0, 255)
        return np.where(block == -1, _NEGATIVE_ULAW_ZERO, table[index])
    return block << bitshift if bitshift else block


def _linear2ulaw(sample: int) -> int:
    """G.711 µ-law byte of a 16-bit linear sample (shorten's ``Slinear2ulaw``, bias 0x84)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, 32635) + 0x84
    exponent = max((magnitude >> 7).bit_length() - 1, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


@functools.lru_cache(maxsize=16)
def ulaw_outward(bitshift: int) -> tuple[int, ...]:
    """Shorten's ``ulaw_outward[bitshift]``: rank + 128 → µ-law byte (``mkbshift.c``'s table).

    Ranks order the µ-law codes by magnitude, the codes whose linear value keeps ``bitshift + 3``
    low zero bits first, so that a shifted-down rank stays small.

    >>> ulaw_outward(0)[:3], ulaw_outward(0)[127:130]
    ((127, 0, 1), (126, 255, 254))
    """
    if not 0 <= bitshift <= 12:
        raise ShortenError(f"µ-law shorten bit shift {bitshift} is above 12")
    maxshift = [0] * 256
    for shift in range(13):
        for sample in range(-(1 << 15), 1 << 15, 1 << (shift + 3)):
            maxshift[_linear2ulaw(sample)] = shift
    forward = [0] * 256
    used = 0
    for keep in (True, False):
        for code in range(255, 127, -1):
            if (maxshift[code] >= bitshift) == keep:
                forward[code], used = used, used + 1
    used = -1
    for code in range(126, -1, -1):
        if maxshift[code] >= bitshift:
            forward[code], used = used, used - 1
    forward[127], used = used, used - 1
    for code in range(126, -1, -1):
        if maxshift[code] < bitshift:
            forward[code], used = used, used - 1
    reverse = [0] * 256
    for code in range(256):
        reverse[forward[code] + 128] = code
    return tuple(reverse)

"""Manifests: the JSON-lines files that list a corpus's utterances.

One utterance per line, with NeMo's keys::

    {"audio_filepath": "wav/a.flac", "duration": 3.21, "text": "hello world"}
    {"audio_filepath": "/abs/b.wav", "duration": 2.0, "text": "hi", "offset": 7.5, "speaker": "s1"}

``audio_filepath`` is absolute or relative to the manifest's own folder; ``offset`` (seconds,
default 0) and ``speaker`` are optional; other keys are ignored. Blank lines are skipped. A bad
line is a ``ManifestError`` naming the file and line.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.outputs import atomic_output

logger = logging.getLogger(__name__)

# A manifest's duration may differ from the header's by rounding (durations written to 0.01 s) and,
# for compressed audio, by an encoder's padding (tens of ms); a manifest written at another sample
# rate is off by 8 % (44.1 vs 48 kHz) or more, one of another set by whole seconds. Within 5 %, the
# batches stay within 5 % of data.max_batch_s. Training warns beyond it (asr.run_data), and leaves
# noise recordings out that fall that much short of their duration (asr.augment).
DURATION_TOLERANCE = 0.05  # of the audio's duration...
DURATION_TOLERANCE_S = 0.1  # ...and at least this, in seconds


def duration_off(manifest_s: float, audio_s: float) -> bool:
    """Whether a manifest's duration differs from its audio's by more than ``DURATION_TOLERANCE``
    of the audio's (and more than ``DURATION_TOLERANCE_S``).

    >>> duration_off(2.05, 2.0), duration_off(4.0, 2.0), duration_off(0.0, 2.0)
    (False, True, True)
    """
    return abs(manifest_s - audio_s) > max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * audio_s)


@dataclass(frozen=True)
class Utterance:
    """One manifest entry.

    Attributes:
        audio_filepath: absolute path of the audio file.
        duration: length of the utterance in seconds (of the segment when ``offset`` is set).
        text: raw transcript (normalized later, by the dataset).
        offset: start of the utterance in the file, in seconds.
        speaker: speaker label, if the manifest gives one.
        source: where it was read, ``manifest.jsonl:LINE`` (None for one made in code): named in
            warnings about it, not compared.
    """

    audio_filepath: str
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None
    source: str | None = field(default=None, compare=False, repr=False)

    def located(self, message: str) -> str:
        """``message`` after where the utterance was read: ``dev.jsonl:3: message``, or ``message``
        alone for one made in code.

        >>> Utterance("a.flac", 1.0, "a", source="dev.jsonl:3").located("a.flac: no such file")
        'dev.jsonl:3: a.flac: no such file'
        """
        return f"{self.source}: {message}" if self.source else message


def manifest_of(utts: Sequence[Utterance]) -> str | None:
    """The manifest the first of ``utts`` was read from (its ``source`` without the line), or None
    for utterances made in code.

    >>> manifest_of([Utterance("a.flac", 1.0, "a", source="dev.jsonl:3")])
    'dev.jsonl'
    """
    source = utts[0].source if utts else None
    return source.rpartition(":")[0] if source else None


class ManifestError(ValueError):
    """A manifest line (or the whole file) is unusable; message ``manifest.jsonl:LINE: cause``."""

    def __init__(self, path: str | os.PathLike, line: int | None, cause: str):
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {cause}")
        self.path, self.line, self.cause = str(path), line, cause

    def __reduce__(self):  # keep it picklable despite the custom __init__
        return type(self), (self.path, self.line, self.cause)


def _field(entry: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    """``entry[key]`` if it is one of ``kinds`` (never a bool); raises ValueError with the cause."""
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"'{key}' must be {what}, got {type(value).__name__} {value!r}")
    if what == "a number" and (not math.isfinite(value) or value < 0):
        raise ValueError(f"'{key}' must be finite and >= 0, got {value!r}")
    return value


def _parse_entry(entry: Any, base: str, check_audio: bool, source: str) -> Utterance:
    """One decoded JSON value to an ``Utterance`` read at ``source``; raises ValueError with the cause."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    for key in ("audio_filepath", "duration", "text"):
        if key not in entry:
            raise ValueError(f"missing key '{key}'")
    path = _field(entry, "audio_filepath", (str,), "a string")
    if not path:
        raise ValueError("'audio_filepath' is empty")
    text = _field(entry, "text", (str,), "a string")
    duration = float(_field(entry, "duration", (int, float), "a number"))
    has = {key: entry.get(key) is not None for key in ("offset", "speaker")}
    offset = float(_field(entry, "offset", (int, float), "a number")) if has["offset"] else 0.0
    speaker = _field(entry, "speaker", (str, int), "a string") if has["speaker"] else None
    path = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    if check_audio and not os.path.isfile(path):
        raise ValueError(f"{'a folder, not an audio file' if os.path.isdir(path) else MISSING_AUDIO}: {path}")
    return Utterance(path, duration, text, offset, None if speaker is None else str(speaker), source)


def read_manifest_report(
    path: str | os.PathLike, check_audio: bool = True
) -> tuple[list[Utterance], list[ManifestError]]:
    """Like ``read_manifest`` but never raises for a bad line: returns ``(utterances, problems)``,
    one ``ManifestError`` (``manifest.jsonl:LINE: cause``) per bad line; raises ``ManifestError``
    only when the file itself cannot be read, is UTF-16 or UTF-32 text, or holds binary data (NUL
    bytes, as audio does). A UTF-8 byte-order mark is skipped.
    """
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ManifestError(path, None, f"cannot read manifest: {e.strerror or e}") from None
    wide = wide_text(data[:64])
    if wide:  # Windows Notepad's "Unicode": its NULs are not those of an audio file
        raise ManifestError(path, None, f"{wide} text: save it as UTF-8")
    if b"\x00" in data[:65536]:  # one line, not a line per chunk of an audio file given by mistake
        raise ManifestError(path, None, "not a JSON-lines manifest (binary data: an audio file or a checkpoint?)")
    raw_lines = data.splitlines()
    utts: list[Utterance] = []
    problems: list[ManifestError] = []
    for lineno, raw in enumerate(raw_lines, start=1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            try:
                entry = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 (byte {e.start + 1})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from None
            utts.append(_parse_entry(entry, base, check_audio, f"{path}:{lineno}"))
        except ValueError as e:
            problems.append(ManifestError(path, lineno, str(e)))
    return utts, problems


MISSING_AUDIO = "audio file not found"  # the cause of a line whose audio file does not exist
MISSING_IN_A_ROW = 20  # lines from the first on whose audio is missing: the paths are wrong, not the files
MISSING_NAMED = 3  # missing files named one by one before one line sums up the paths that look wrong


def missing_audio_summary(path: str | os.PathLike, utts: Sequence[Utterance],
                          problems: list[ManifestError]) -> tuple[list[ManifestError], ManifestError | None]:
    """The problems of :func:`read_manifest_report` to name one by one, and one that sums up the
    missing audio files when the paths rather than the files look wrong: more than ``MISSING_NAMED``
    missing, and no line's audio found, or none of the first ``MISSING_IN_A_ROW`` lines'. Then only
    the first ``MISSING_NAMED`` missing files are named, and the sum is ``MANIFEST: none of the N
    audio files exist (first: PATH); are the paths relative to the manifest's folder?`` (``M of
    the N ... do not exist`` when some do). Otherwise: ``(problems, None)``.
    """
    missing = [p for p in problems if p.cause.startswith(f"{MISSING_AUDIO}: ")]
    others = [p for p in problems if not p.cause.startswith(f"{MISSING_AUDIO}: ")]
    first_found = int(utts[0].source.rpartition(":")[2]) if utts and utts[0].source else math.inf
    leading = problems[:MISSING_IN_A_ROW]
    in_a_row = len(leading) == MISSING_IN_A_ROW and leading == missing[:MISSING_IN_A_ROW] \
        and (leading[-1].line or 0) < first_found
    if len(missing) <= MISSING_NAMED or not (in_a_row or (not utts and not others)):
        return problems, None
    listed = sorted(missing[:MISSING_NAMED] + others, key=lambda p: p.line or 0)
    total = len(utts) + len(missing)
    how_many = f"none of the {total} audio files exist" if not utts else \
        f"{len(missing)} of the {total} audio files do not exist"
    first = missing[0].cause[len(MISSING_AUDIO) + 2:]
    return listed, ManifestError(path, None, f"{how_many} (first: {first}); "
                                             "are the paths relative to the manifest's folder?")


_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe", "utf-16-le"),
              (b"\xfe\xff", "utf-16-be"))  # UTF-32 first: its little-endian mark begins with UTF-16's


def wide_text(head: bytes) -> str | None:
    """The encoding of ``head``, a file's first bytes, when it is wide text: "UTF-16" or "UTF-32"
    after the byte-order mark of either when what follows it reads as text in that encoding, "UTF-16"
    for text without one whose characters are ASCII (a NUL at every other byte, and at no other
    byte); None for anything else. An MPEG Layer I frame with a checksum begins with UTF-16's
    little-endian mark: its audio data is not text.

    >>> wide_text('{"a"'.encode("utf-16")), wide_text('{"a"'.encode("utf-16-be")), wide_text(b"RIFF$\\0\\0\\0")
    ('UTF-16', 'UTF-16', None)
    >>> wide_text(bytes.fromhex("fffe14c0") + bytes(60))  # an MP1 frame: header, checksum, silence
    """
    for bom, codec in _WIDE_BOMS:
        if head.startswith(bom):
            try:  # the head may end inside a character: decode what is whole
                text = codecs.getincrementaldecoder(codec)().decode(head[len(bom):])
            except UnicodeDecodeError:
                return None
            readable = all(c.isprintable() or c in "\t\n\r" for c in text)
            return codec[:6].upper() if readable else None
    halves = (head[0::2], head[1::2])
    for nuls, chars in (halves, halves[::-1]):
        if len(head) >= 2 and not nuls.strip(b"\x00") and b"\x00" not in chars:
            return "UTF-16"
    return None


def read_manifest(
    path: str | os.PathLike, skip_bad: bool = False, check_audio: bool = True
) -> list[Utterance]:
    """Read a JSON-lines manifest (see the module docstring for the format).

    Args:
        path: the manifest; relative audio paths resolve against its folder.
        skip_bad: log each bad line and the total skipped (``logger.warning``) and return the
            good ones, instead of raising on the first bad line. Audio files missing from every
            line, or from the first ones, are named a few and then summed up in one line (see
            :func:`missing_audio_summary`).
        check_audio: check that each audio file exists (a missing one is a bad line).

    Returns:
        The utterances, in file order, with absolute audio paths.

    Raises:
        ManifestError: ``manifest.jsonl:LINE: cause`` for the first bad line (unless
            ``skip_bad``; the sum of :func:`missing_audio_summary` when there is one), or
            ``manifest.jsonl: cause`` when the file cannot be read.
    """
    utts, problems = read_manifest_report(path, check_audio=check_audio)
    listed, summary = missing_audio_summary(path, utts, problems)
    if problems and not skip_bad:
        raise summary or problems[0]
    for problem in listed + ([summary] if summary else []):
        logger.warning("%s", problem)
    if problems:
        logger.warning("%s: skipped %d of %d lines", path, len(problems), len(problems) + len(utts))
    hours = sum(u.duration for u in utts) / 3600
    logger.info("manifest=%s utterances=%d hours=%.3f", path, len(utts), hours)
    return utts


def write_manifest(path: str | os.PathLike, utts: Iterable[Utterance]) -> None:
    """Write utterances as a JSON-lines manifest, atomically.

    The lines (see :func:`manifest_lines`) go to a temporary file in the same folder, which then
    replaces ``path``; on any failure ``path`` is left as it was.

    Args:
        path: the manifest to write (its folder is created if needed).
        utts: the utterances (relative audio paths are taken relative to the working directory).

    Raises:
        ValueError: an utterance has a negative or non-finite duration or offset.
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, durable=True) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(manifest_lines(path, utts))


def manifest_lines(path: str | os.PathLike, utts: Iterable[Utterance]) -> Iterator[str]:
    """The lines, each ending in a newline, that :func:`write_manifest` writes to ``path``.

    Audio paths inside the manifest's folder are written relative to it, others absolute;
    ``offset`` is written only when non-zero and ``speaker`` only when set.

    Raises:
        ValueError: an utterance has a negative or non-finite duration or offset.
    """
    folder = os.path.abspath(Path(path).parent)
    for i, utt in enumerate(utts):
        for name, value in (("duration", utt.duration), ("offset", utt.offset)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{path}: utterance {i} ({utt.audio_filepath}): "
                                 f"{name} must be finite and >= 0, got {value!r}")
        audio = os.path.abspath(utt.audio_filepath)
        if os.path.commonpath([folder, audio]) == folder:
            audio = os.path.relpath(audio, folder)
        entry: dict[str, Any] = {"audio_filepath": audio, "duration": utt.duration, "text": utt.text}
        if utt.offset:
            entry["offset"] = utt.offset
        if utt.speaker is not None:
            entry["speaker"] = utt.speaker
        yield json.dumps(entry, ensure_ascii=False) + "\n"


def manifest_as_text_error(path: str | os.PathLike) -> str | None:
    """The error for a manifest given where text is read (for an LM, or a book): its keys, paths and
    durations would be read as words. None for any other file, and for one that cannot be read
    (its reader names that).
    """
    try:
        entry = first_entry(path)
    except OSError:
        return None
    if entry and "audio_filepath" in entry:
        return (f"{path}:1: a manifest (JSON lines), not text; its transcripts: "
                f"python tools/lm_text.py {path} --format manifest --out TEXT")
    return None


def first_entry(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object on the first line of ``path``, ``{}`` for an empty file, None for anything
    else: enough to tell an earlier output of a tool from a user's file before replacing it.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        first = f.readline(1_000_000)
        if not first.strip():
            return None if f.read(1) else {}
    try:
        entry = json.loads(first)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None

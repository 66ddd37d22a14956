"""LibriSpeech-layout corpora (LibriSpeech, mini-LibriSpeech, any subset): JSON-lines manifests.

The layout (what the OpenSLR archives extract to)::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt    # "<utterance id> <TEXT>" per line

A usable utterance has exactly one audio file and exactly one well-formed transcript line, and an
audio header that reads (durations come from :func:`asr.audio.audio_info`, the header only: the
samples are not decoded). Every other case is a problem, listed as ``location: cause`` in
``SplitReport.problems`` and in ``<split>.problems.txt``; the utterance is skipped and counted.
Damage inside FLAC frames that leaves the header intact shows only when the audio is decoded
(training with ``data.skip_bad`` and evaluation skip such files then).

A split already prepared (its manifest and ``<split>.summary.json`` exist) is not prepared again
unless ``force`` is set. A manifest without its summary (a preparation stopped between the two, or
a file of the user's) is prepared again and kept only if it holds exactly the lines made now: then
the summary is written beside it; otherwise it is not overwritten.

Example:
    >>> sorted(["84-121-10", "84-121-9", "1272-128-0"], key=utterance_sort_key)
    ['84-121-9', '84-121-10', '1272-128-0']
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asr.audio import AudioError, audio_info
from asr.manifest import Utterance, manifest_lines, write_manifest
from asr.outputs import OutputError, atomic_output, holds, json_lines_with
from asr.text import normalize_text

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav")
TRANS_SUFFIX = ".trans.txt"


@dataclass
class SplitReport:
    """What preparing one split found.

    Attributes:
        name: the split's folder name (``train-clean-100``, ``dev-4spk``).
        manifest: the JSON-lines manifest written.
        num_utterances: utterances in the manifest.
        num_words: words in their transcripts (split on whitespace).
        duration_s: total audio duration, seconds.
        num_skipped: utterances (audio files or transcript lines) left out.
        problems: one ``location: cause`` line per problem found, in walk order.
        reused: the split was prepared before and not prepared again.
    """

    name: str
    manifest: Path
    num_utterances: int
    num_words: int
    duration_s: float
    num_skipped: int
    problems: list[str] = field(default_factory=list)
    reused: bool = False

    def summary(self) -> str:
        """One line, e.g. ``dev-clean: 2703 utterances, 54402 words, 5.39 h, 0 skipped -> ...``."""
        return (f"{self.name}: {self.num_utterances} utterances, {self.num_words} words, "
                f"{self.duration_s / 3600:.2f} h, {self.num_skipped} skipped -> {self.manifest}"
                + (" (already prepared)" if self.reused else ""))


def utterance_sort_key(uid: str) -> tuple:
    """Sort ids by their numeric fields (``84-121-9`` before ``84-121-10``), text after numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in uid.split("-"))


def _is_audio(p: Path) -> bool:
    """Whether ``p`` is an audio file by its suffix, in any case (``.FLAC`` from a case-insensitive
    file system too)."""
    return p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES


def _folder(path: str | Path) -> Path:
    """``path``, a folder; else FileNotFoundError: 'not a folder' or 'no such folder'."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def is_split_dir(path: Path) -> bool:
    """True when ``path`` holds a ``<speaker>/<chapter>/`` folder in LibriSpeech layout: one with
    ``<speaker>-<chapter>.trans.txt`` or ``<speaker>-<chapter>-<n>`` audio. Files named otherwise
    do not make a split: an audio file one level too high in a folder of splits
    (``<split>/<speaker>/x.flac``) would make that folder look like one split."""
    if not path.is_dir():
        return False
    for p in path.glob("*/*/*"):
        prefix = f"{p.parent.parent.name}-{p.parent.name}"
        if (p.name == prefix + TRANS_SUFFIX and p.is_file()) or (p.name.startswith(prefix + "-") and _is_audio(p)):
            return True
    return False


def find_splits(data_dir: str | Path, names: list[str] | None = None) -> dict[str, Path]:
    """The LibriSpeech-layout splits in ``data_dir``, by folder name.

    ``data_dir`` is a split itself (``.../LibriSpeech/dev-clean``, ``dev-4spk``), a folder of
    splits (``.../LibriSpeech``), or a download folder holding ``LibriSpeech/``.

    Args:
        data_dir: where to look.
        names: keep only these splits (all of them must be found).

    Raises:
        FileNotFoundError: no split there, or a named split is missing (the message lists those
            found) or cannot be read. A folder of splits that cannot be read, not named, is warned of.
    """
    data_dir = _folder(data_dir)
    closed: dict[str, str] = {}  # folders that may be splits but cannot be read: name -> why
    if is_split_dir(data_dir):
        found = {data_dir.name: data_dir}
    else:
        root = data_dir / "LibriSpeech" if (data_dir / "LibriSpeech").is_dir() else data_dir
        found = {}
        for p in sorted(root.iterdir()):
            if is_split_dir(p):
                found[p.name] = p
            elif p.is_dir():
                try:
                    os.listdir(p)
                except OSError as e:  # glob passes over it in silence
                    closed[p.name] = f"{p}: cannot be read ({e.strerror or e})"
    if names and (why := next((closed[n] for n in names if n in closed), None)):
        raise FileNotFoundError(why)
    if not names:
        for why in closed.values():
            logger.warning("%s; not prepared", why)
    if not found:
        raise FileNotFoundError(f"{data_dir}: no LibriSpeech-layout split "
                                "(<split>/<speaker>/<chapter>/*.flac and *.trans.txt) found")
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise FileNotFoundError(f"{data_dir}: split(s) {', '.join(missing)} not found "
                                    f"(found: {', '.join(found)})")
        found = {n: found[n] for n in names}
    return found


def _read_transcripts(path: Path, prefix: str, problems: list[str]) -> tuple[dict[str, tuple[int, str]], set[str]]:
    """Good lines of one ``.trans.txt`` as ``{uid: (line, text)}``, and the ids of bad lines.

    A line is bad when it has no text, its text normalizes to nothing, it is not UTF-8, its id is
    not ``<prefix><digits>`` (``prefix`` is ``<speaker>-<chapter>-``), or the id repeats (every
    line with that id is then bad: which one is right cannot be told).

    Raises:
        OSError: the file cannot be read (a folder of that name, no permission).
    """
    good: dict[str, tuple[int, str]] = {}
    bad: set[str] = set()
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()  # an editor's byte-order mark
        except UnicodeDecodeError as e:
            problems.append(f"{where}: not valid UTF-8 (byte {e.start + 1}); line skipped")
            continue
        if not line:
            continue
        uid, text = (line.split(None, 1) + [""])[:2]  # the id ends at any whitespace (a tab, too)
        if not (uid.startswith(prefix) and uid[len(prefix):].isdigit()):
            problems.append(f"{where}: utterance id {uid!r} is not {prefix}<number>; line skipped")
            continue
        if uid in good or uid in bad:
            problems.append(f"{where}: utterance {uid} has more than one transcript line; skipped")
            good.pop(uid, None)
            bad.add(uid)
            continue
        if not text or not normalize_text(text):
            problems.append(f"{where}: utterance {uid} has no transcript text; skipped")
            bad.add(uid)
            continue
        good[uid] = (lineno, text)
    return good, bad


def _chapter(chapter_dir: Path, speaker: str, utts: list[Utterance], problems: list[str]) -> int:
    """Append the chapter's good utterances to ``utts``; return how many were skipped."""
    chapter = chapter_dir.name
    prefix = f"{speaker}-{chapter}-"
    trans_path = chapter_dir / f"{speaker}-{chapter}{TRANS_SUFFIX}"
    audio: dict[str, Path] = {}
    skipped = 0
    try:
        files = [p for p in sorted(chapter_dir.iterdir()) if p.is_file()]
    except OSError as e:  # a folder we may not read: this chapter is lost, not the split
        problems.append(f"{chapter_dir}: cannot be read ({e.strerror or e}); the chapter is skipped")
        return 0
    for p in files:
        if p.name.endswith(TRANS_SUFFIX) and p != trans_path:
            problems.append(f"{p}: unexpected transcript file (expected {trans_path.name}); ignored")
        elif _is_audio(p):
            if p.stem in audio:
                problems.append(f"{p}: second audio file for utterance {p.stem}; skipped")
                skipped += 1
            else:
                audio[p.stem] = p
    lines: dict[str, tuple[int, str]] = {}
    bad: set[str] = set()
    read = False
    if os.path.lexists(trans_path):
        try:
            lines, bad = _read_transcripts(trans_path, prefix, problems)
            read = True
        except OSError as e:
            problems.append(f"{trans_path}: cannot be read ({e.strerror or e}); "
                            f"the chapter's {len(audio)} audio files are skipped")
    elif audio:
        problems.append(f"{trans_path}: missing; the chapter's {len(audio)} audio files are skipped")
    for uid in sorted(set(audio) | set(lines) | bad, key=utterance_sort_key):
        path = audio.get(uid)
        if uid in bad:
            skipped += 1  # already reported with its line
            continue
        if path is None:
            problems.append(f"{trans_path}:{lines[uid][0]}: utterance {uid} has no audio file; skipped")
            skipped += 1
            continue
        if uid not in lines:
            if read:
                problems.append(f"{path}: no transcript line in {trans_path.name}; skipped")
            skipped += 1
            continue
        try:
            info = audio_info(path)
        except AudioError as e:
            problems.append(f"{e}; skipped")
            skipped += 1
            continue
        utts.append(Utterance(str(path.resolve()), info.duration_s, lines[uid][1], speaker=speaker))
    return skipped


def read_split(split_dir: str | Path) -> tuple[list[Utterance], list[str], int]:
    """Walk one split: ``(utterances sorted by id, problems, number skipped)``.

    Raises:
        FileNotFoundError: ``split_dir`` is not a folder.
    """
    split_dir = _folder(split_dir)
    utts: list[Utterance] = []
    problems: list[str] = []
    skipped = 0
    top = sorted(split_dir.iterdir())
    stray = [p for p in top if _is_audio(p)]
    if stray:  # <split>/x.flac: no speaker or chapter to take them from
        problems.append(f"{split_dir}: {len(stray)} audio files outside a speaker's chapter folder; skipped")
        skipped += len(stray)
    for speaker_dir in (p for p in top if p.is_dir()):
        try:
            entries = sorted(speaker_dir.iterdir())
            chapters = [p for p in entries if p.is_dir()]
        except OSError as e:  # a folder we may not read: this speaker is lost, not the split
            problems.append(f"{speaker_dir}: cannot be read ({e.strerror or e}); the speaker's chapters are skipped")
            continue
        for chapter_dir in chapters:
            skipped += _chapter(chapter_dir, speaker_dir.name, utts, problems)
        stray = [p.name for p in entries if _is_audio(p)]
        if stray:
            problems.append(f"{speaker_dir}: {len(stray)} audio files outside a chapter folder; skipped")
            skipped += len(stray)
    utts.sort(key=lambda u: utterance_sort_key(Path(u.audio_filepath).stem))
    return utts, problems, skipped


def prepare_split(split_dir: str | Path, out_dir: str | Path, name: str | None = None,
                  force: bool = False) -> SplitReport:
    """Write ``out_dir/<name>.jsonl`` (and ``.summary.json``, ``.problems.txt``) for one split.

    Args:
        split_dir: a ``<speaker>/<chapter>/`` tree.
        out_dir: where the manifest goes.
        name: manifest name (default: the split folder's name).
        force: prepare again even if a finished manifest exists.

    Returns:
        The report; problems are also logged (the first 20, then a count).
    """
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    name = name or split_dir.name
    if not force and (report := prepared_split(out_dir, name)) is not None:
        return report
    return write_split(out_dir, name, *read_split(split_dir), force=force)


def prepared_split(out_dir: Path, name: str) -> SplitReport | None:
    """The report of ``out_dir/<name>.jsonl`` if a finished preparation wrote it; None if it is to
    be prepared (see :func:`finished_summary`)."""
    return finished_summary(out_dir / f"{name}.jsonl", out_dir / f"{name}.summary.json", SplitReport)


def finished_summary(manifest: Path, summary_path: Path, report_type: type) -> Any:
    """The report (a ``report_type``, marked ``reused``) saved beside ``manifest`` by the
    preparation that finished it; None when there is no manifest, or a manifest without its
    summary: it is to be prepared, and :func:`save_prepared` keeps such a manifest unless it holds
    exactly the lines prepared (then it was left by a preparation stopped before its summary).

    Raises:
        OutputError: the manifest exists without a summary and is not a manifest (a folder, or a
            file whose first line is not an utterance), or with a summary that is not one of this
            kind (damaged, or written by another version). It is not replaced unless the
            preparation is forced.
    """
    if not os.path.lexists(manifest):
        return None
    if not summary_path.is_file():
        if not (manifest.is_file() and json_lines_with(manifest, {"audio_filepath", "duration", "text"})):
            raise OutputError(f"{manifest}: exists, is not a manifest, and no {summary_path.name} beside it says "
                              "asr prepare wrote it; not overwritten (remove it, or pass --force to prepare it again)")
        return None
    try:
        saved = json.loads(summary_path.read_text(encoding="utf-8"))
        return report_type(**{**saved, "manifest": manifest, "reused": True})
    except (ValueError, TypeError) as e:  # not JSON, not an object, other fields
        raise OutputError(f"{summary_path}: not a summary asr prepare wrote ({e}); {manifest.name} not overwritten "
                          "(remove both, or pass --force to prepare it again)") from None


def write_split(out_dir: Path, name: str, utts: list[Utterance], problems: list[str], skipped: int,
                force: bool = False) -> SplitReport:
    """Write ``out_dir/<name>.jsonl``, ``.problems.txt`` and, last, ``.summary.json`` (see
    :func:`save_prepared`); log the first 20 problems (then a count) and return the report."""
    report = SplitReport(name, out_dir / f"{name}.jsonl", len(utts), sum(len(u.text.split()) for u in utts),
                         sum(u.duration for u in utts), skipped, problems)
    save_prepared(report, utts, force=force)
    logger.info("split=%s utterances=%d words=%d hours=%.3f skipped=%d", name, report.num_utterances,
                report.num_words, report.duration_s / 3600, skipped)
    return report


def save_prepared(report: Any, utts: list[Utterance], force: bool = False) -> None:
    """Write what a preparation made of one split or set: ``report.manifest``, its
    ``<name>.problems.txt`` and, last, its ``<name>.summary.json`` (the report's fields, read back by
    :func:`finished_summary`); log the first 20 problems, then a count. ``report`` is a
    ``SplitReport`` or any dataclass with ``name``, ``manifest`` and ``problems`` (WSJ's ``SetReport``).

    Unless ``force`` is set, a manifest already there (one without a summary) is kept, and the
    summary written beside it, only if it holds exactly the lines of ``utts``.

    Raises:
        OutputError: not forced, and a manifest there holds other lines (nothing is written).
    """
    out_dir, name, problems = report.manifest.parent, report.name, report.problems
    manifest, summary_path = report.manifest, out_dir / f"{name}.summary.json"
    keep = not force and os.path.lexists(manifest)
    if keep and not holds(manifest, (line.encode("utf-8") for line in manifest_lines(manifest, utts))):
        raise OutputError(f"{manifest}: exists without {summary_path.name} and holds other lines than asr prepare "
                          "makes of the corpus now; not overwritten (remove it, or pass --force to prepare it again)")
    for line in problems[:20]:
        logger.warning("%s", line)
    if len(problems) > 20:
        logger.warning("... %d more problems in %s", len(problems) - 20, out_dir / f"{name}.problems.txt")
    if keep:
        logger.info("%s: left by a preparation stopped before its summary (the same lines); finished", manifest)
    else:
        if summary_path.is_file():  # forced: an old summary must not vouch for a manifest being replaced
            summary_path.unlink()
        write_manifest(manifest, utts)
    (out_dir / f"{name}.problems.txt").write_text("".join(p + "\n" for p in problems), encoding="utf-8")
    fields = {k: v for k, v in asdict(report).items() if k not in ("manifest", "reused")}
    with atomic_output(summary_path) as tmp:  # written last: its presence means it is done
        tmp.write_text(json.dumps(fields, indent=1) + "\n", encoding="utf-8")


def prepare_librispeech(data_dir: str | Path, out_dir: str | Path, splits: list[str] | None = None,
                        force: bool = False) -> list[SplitReport]:
    """Prepare every split found in ``data_dir`` (see :func:`find_splits`), or those named.

    Raises:
        FileNotFoundError: no split found, or a named split is missing.
    """
    return [prepare_split(path, out_dir, name, force=force)
            for name, path in find_splits(data_dir, splits).items()]

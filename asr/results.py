"""Measured results and the comparison with the Deep Speech 2 paper's table (``asr compare``).

A measured result is one JSON object, written by ``asr evaluate --results-json PATH``::

    {"test_set": "librispeech-test-clean", "wer": 12.34, "cer": 4.1, "num_utterances": 2620,
     "num_words": 52576, "train_data": "LibriSpeech train-clean-100 (100.6 h)",
     "model": "medium, 30.9 M parameters", "decoding": "greedy", "hardware": "1x NVIDIA H100",
     "commit": "1a2b3c4", "date": "2025-01-31", "checkpoint": "exp/x/model.pt",
     "manifest": "data/test-clean.jsonl"}

``wer`` and ``cer`` are percentages. ``test_set`` names a row of :data:`PAPER_ROWS` (its ``key``)
when the result is comparable with the paper, or anything else (``mini-dev-clean-2``): such
results are listed below the paper's rows. A results file holds one object, a list of objects,
or one object per line.

Example:
    >>> r = MeasuredResult("librispeech-test-clean", 9.5, "LibriSpeech 960 h", "ds2", "greedy", "1x H100")
    >>> table = comparison_table([r])
    >>> [line for line in table.splitlines() if "test-clean" in line][0].split(" | ")[1:6]
    ['LibriSpeech test-clean', '7.89', '5.33', '5.83', '9.50']
"""

from __future__ import annotations

import difflib
import json
import logging
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from asr.outputs import atomic_output, check_output
from asr.paths import file_identity

logger = logging.getLogger(__name__)

PAPER = ("Amodei et al. 2016, *Deep Speech 2: End-to-End Speech Recognition in English and "
         "Mandarin*, Table 13")


@dataclass(frozen=True)
class PaperRow:
    """One row of the DS2 paper's comparison: WER (%) of DS1, DS2 and human transcribers."""

    key: str  # the ``test_set`` a measured result uses to land on this row
    category: str
    test_set: str
    ds1: float
    ds2: float
    human: float


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("wsj-eval92", "read", "WSJ eval'92", 4.94, 3.60, 5.03),
    PaperRow("wsj-eval93", "read", "WSJ eval'93", 6.94, 4.98, 8.08),
    PaperRow("librispeech-test-clean", "read", "LibriSpeech test-clean", 7.89, 5.33, 5.83),
    PaperRow("librispeech-test-other", "read", "LibriSpeech test-other", 21.74, 13.25, 12.69),
    PaperRow("voxforge-american-canadian", "accented", "VoxForge American-Canadian", 15.01, 7.55, 4.85),
    PaperRow("voxforge-commonwealth", "accented", "VoxForge Commonwealth", 28.46, 13.56, 8.15),
    PaperRow("voxforge-european", "accented", "VoxForge European", 31.20, 17.55, 12.76),
    PaperRow("voxforge-indian", "accented", "VoxForge Indian", 45.35, 22.44, 22.15),
    PaperRow("chime-eval-clean", "noisy", "CHiME eval clean", 6.30, 3.34, 3.46),
    PaperRow("chime-eval-real", "noisy", "CHiME eval real", 67.94, 21.79, 11.84),
    PaperRow("chime-eval-sim", "noisy", "CHiME eval sim", 80.27, 45.05, 31.33),
)


class ResultsError(ValueError):
    """A results file is unreadable or a record in it is malformed; the message names the file."""


@dataclass(frozen=True)
class MeasuredResult:
    """One measured WER of this toolkit, with what it takes to reproduce it."""

    test_set: str  # a PAPER_ROWS key, or another test set's name
    wer: float  # word error rate, percent
    train_data: str  # e.g. "LibriSpeech train-clean-100 (100.6 h)"
    model: str  # e.g. "medium, 30.9 M parameters"
    decoding: str  # e.g. "greedy", "beam 64 + 4-gram LM"
    hardware: str  # e.g. "1x NVIDIA H100", "2-core CPU"
    cer: float | None = None  # character error rate, percent
    num_utterances: int | None = None
    num_words: int | None = None  # reference words scored
    commit: str = ""  # git commit of the code that produced it
    date: str = ""  # ISO date of the measurement
    checkpoint: str = ""
    manifest: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> MeasuredResult:
        """Build from a decoded JSON object; raises ``ResultsError`` naming ``where``."""
        if not isinstance(d, dict):
            raise ResultsError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ResultsError(f"{where}: unknown keys {', '.join(unknown)}")
        required = ("test_set", "wer", "train_data", "model", "decoding", "hardware")
        missing = [k for k in required if k not in d]
        if missing:
            raise ResultsError(f"{where}: missing keys {', '.join(missing)}")
        d = {k: v for k, v in d.items() if v is not None or k in required}  # null: the default
        for k in ("wer", "cer"):
            v = d.get(k, 0)  # JSON reads NaN, Infinity, 1e999 and 10**400 too: none is a percentage
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= sys.float_info.max:
                raise ResultsError(f"{where}: '{k}' must be a percentage >= 0 (a finite number), got {v!r}")
        for k in ("num_utterances", "num_words"):
            v = d.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ResultsError(f"{where}: '{k}' must be a count >= 0, got {v!r}")
        for k in ("test_set", "train_data", "model", "decoding", "hardware", "commit", "date", "checkpoint",
                  "manifest"):
            v = d.get(k, "")
            if not isinstance(v, str):
                got = "null" if v is None else type(v).__name__
                raise ResultsError(f"{where}: '{k}' must be a string, got {got}")
        if not d["test_set"].strip():  # a row of the table with no name
            raise ResultsError(f"{where}: 'test_set' is empty")
        return cls(**d)


def write_result(result: MeasuredResult, path: str | Path) -> Path:
    """Write one result as a JSON object (atomically: temp file, then rename), over nothing but an
    earlier results file.

    Raises:
        OutputError: ``path`` holds something else (another file, a folder, a device).
    """
    path = results_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def results_path(path: str | Path) -> Path:
    """The file to write a result to at ``path`` (see :func:`write_result`); call it early to refuse
    a path before the work.

    Raises:
        OutputError: ``path`` holds something other than an earlier results file.
    """
    return check_output(path, _is_results_file, "a results file of asr evaluate")


def _is_results_file(path: Path) -> bool:
    try:
        record = json.loads(path.read_bytes()[:1_000_000])
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
        return False
    return _is_result_record(record)


def _is_result_record(value: object) -> bool:
    """Whether a JSON value is meant as a result of ``asr evaluate --results-json`` (valid or not)."""
    return isinstance(value, dict) and {"test_set", "wer"} <= set(value)


def read_results(paths: list[str | Path], skipped: list[str] | None = None) -> list[MeasuredResult]:
    """Read results files; a folder is searched (recursively) for the ``*.json`` files that hold
    results of ``asr evaluate --results-json``, whatever their name: other JSON is passed over, and
    a file that is not JSON at all, or a results file with a malformed record, is passed over with
    a warning naming it, as is a folder holding no result; the warnings are appended to ``skipped``
    too, when it is given. A file given twice (by name, or by name and in a folder given too) is
    read once, and a record equal in every field to one read before (a copy of a results file
    under another name) is listed once, each with a warning that is not appended to ``skipped``.

    Raises:
        ResultsError: unreadable file, invalid JSON or no record (a file given by name), or a
            malformed record (file and line named).
        FileNotFoundError: a path that does not exist.
    """
    out: list[MeasuredResult] = []
    skipped = [] if skipped is None else skipped
    seen: dict[tuple[int, int], bool] = {}  # file read -> it held results; one named twice is read once
    first_place: dict[MeasuredResult, str] = {}  # where each result listed was read: a copy is listed once

    def skip(message: str) -> None:
        logger.warning("%s", message)
        skipped.append(message)

    def first_time(f: Path) -> bool:
        file_id = file_identity(f)
        if file_id in seen:
            logger.warning("%s: given more than once; its results are listed once", f)
            return False
        seen[file_id] = False
        return True

    def add(f: Path, records: list[tuple[str, MeasuredResult]]) -> None:
        seen[file_identity(f)] = True
        for where, result in records:
            if result in first_place:
                logger.warning("%s: the same result as %s (a copy?); listed once", where, first_place[result])
            else:
                first_place[result] = where
                out.append(result)

    for p in map(Path, paths):
        if p.is_dir():
            found = False
            for f in sorted(p.rglob("*.json")):
                if not f.is_file():
                    continue
                if not first_time(f):  # a folder whose results were named too holds results all the same
                    found |= seen[file_identity(f)]
                    continue
                try:
                    records = _json_records(f)
                except ResultsError as e:
                    skip(f"skipped {e}")
                    continue
                if records and all(_is_result_record(v) for _, v in records):
                    try:
                        add(f, [(where, MeasuredResult.from_dict(v, where)) for where, v in records])
                        found = True
                    except ResultsError as e:  # one damaged file does not hide the others
                        skip(f"skipped {e}")
            if not found:
                skip(f"{p}: no results of asr evaluate --results-json found in this folder")
        elif p.is_file():
            if first_time(p):
                records = _json_records(p)
                if not records:
                    raise ResultsError(f"{p}: holds no results (an empty file or list)")
                add(p, [(where, MeasuredResult.from_dict(v, where)) for where, v in records])
        else:
            raise FileNotFoundError(f"{p}: no such results file or folder")
    return out


def _json_records(f: Path) -> list[tuple[str, object]]:
    """The JSON values of a file (one document, a list of them, or JSON lines), each with its place
    (``file``, or ``file:line`` for JSON lines). Raises ``ResultsError`` naming the file and line."""
    try:
        text = f.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is passed over
    except OSError as e:
        raise ResultsError(f"{f}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:  # a checkpoint, an archive, ...
        raise ResultsError(f"{f}: not a results file (not UTF-8 text: a binary file?)") from None
    try:
        value = json.loads(text)
        return [(f"{f}", v) for v in (value if isinstance(value, list) else [value])]
    except RecursionError:
        raise ResultsError(f"{f}: invalid JSON (nested too deeply)") from None
    except json.JSONDecodeError:  # one object per line
        records = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((f"{f}:{i}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ResultsError(f"{f}:{i}: invalid JSON ({e.msg})") from None
                except RecursionError:
                    raise ResultsError(f"{f}:{i}: invalid JSON (nested too deeply)") from None
        return records


def paper_row_hint(test_set: str) -> str | None:
    """The key of the paper's row that ``test_set`` probably means, when it is no key itself: a
    key it ends (``test-clean``: the manifest's name, ``asr evaluate``'s default) or one a typo away.

    >>> paper_row_hint("test-clean"), paper_row_hint("librispeech-test_other"), paper_row_hint("digits")
    ('librispeech-test-clean', 'librispeech-test-other', None)
    """
    keys = [row.key for row in PAPER_ROWS]
    if test_set in keys or not test_set:
        return None
    ends = [key for key in keys if key.endswith("-" + test_set.lower())]
    if len(ends) == 1:
        return ends[0]
    close = difflib.get_close_matches(test_set.lower(), keys, n=1, cutoff=0.85)
    return close[0] if close else None


def _percent(value: float) -> str:
    """A measured WER in the table: two decimals, in powers of ten from 100,000 % on (any finite
    number is read, and 1e300 took 301 digits).

    >>> _percent(12.5), _percent(1e300), _percent(1e-300)
    ('12.50', '1e+300', '0.00')
    """
    return f"{value:.2f}" if value < 1e5 else f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def comparison_table(results: list[MeasuredResult]) -> str:
    """A Markdown table: every row of the paper's Table 13 with DS1 / DS2 / human WER beside this
    toolkit's measured WER (one line per measurement, "not run" where there is none), followed by
    measured results on other test sets. WERs are percentages."""
    head = ("| speech | test set | DS1 | DS2 | human | asr (this toolkit) | training data | model "
            "| decoding | hardware | commit, date |")
    lines = [head, "|---|---|--:|--:|--:|--:|---|---|---|---|---|"]
    known = {row.key for row in PAPER_ROWS}

    def measured(r: MeasuredResult) -> str:
        return (f"{_percent(r.wer)} | {_cell(r.train_data)} | {_cell(r.model)} | {_cell(r.decoding)} | "
                f"{_cell(r.hardware)} | {_cell(' '.join(x for x in (r.commit, r.date) if x)) or '-'}")

    for row in PAPER_ROWS:
        paper = f"| {row.category} | {row.test_set} | {row.ds1:.2f} | {row.ds2:.2f} | {row.human:.2f} |"
        mine = [r for r in results if r.test_set == row.key]
        if not mine:
            lines.append(f"{paper} not run | - | - | - | - | - |")
        lines.extend(f"{paper} {measured(r)} |" for r in mine)
    for r in results:
        if r.test_set not in known:
            lines.append(f"| other | {_cell(r.test_set)} | - | - | - | {measured(r)} |")
    lines.append("")
    lines.append(f"DS1, DS2 and human: {PAPER}. The paper's DS2 was trained on 11,940 h of English "
                 "speech and decoded with beam search and an n-gram language model; "
                 "its numbers are not re-measured here. WER in %.")
    return "\n".join(lines)

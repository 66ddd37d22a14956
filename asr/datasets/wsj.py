"""WSJ from the LDC discs (WSJ0 LDC93S6A/B, WSJ1 LDC94S13A/B): the standard sets as manifests.

The sets are those the community compares on, built as Kaldi's ``egs/wsj/s5/local/wsj_data_prep.sh``
builds them — utterance lists from the official index files (``.ndx``), transcripts from the
detailed orthographic transcriptions (``.dot``), Sennheiser microphone (``.wv1``) by default:

=================  ======  =========================================================  ============
set                utts    index files (disc: path)                                   note
=================  ======  =========================================================  ============
train_si84         7138    11-13.1: wsj0/doc/indices/train/tr_s_wv1.ndx               speaker 401
                                                                                      of 11-2.1
                                                                                      left out
train_si284        37416   13-34.1: wsj1/doc/indices/si_tr_s.ndx + the si84 index     idem
test_eval92        333     11-13.1: wsj0/doc/indices/test/nvp/si_et_20.ndx            adds .wv1
test_eval92_5k     330     11-13.1: wsj0/doc/indices/test/nvp/si_et_05.ndx            adds .wv1
test_dev93         503     13-34.1: wsj1/doc/indices/h1_p0.ndx
test_dev93_5k      513     13-34.1: wsj1/doc/indices/h2_p0.ndx
test_eval93        213     13-32.1: wsj1/doc/indices/wsj1/eval/h1_p0.ndx              disc id
test_eval93_5k     215     13-32.1: wsj1/doc/indices/wsj1/eval/h2_p0.ndx              13_32_1 read
                                                                                      as 13_33_1
=================  ======  =========================================================  ============

Layout: ``--wsj0``/``--wsj1`` name folders holding the disc folders as distributed
(``11-1.1/wsj0/...``, ``13-34.1/wsj1/...``, also as ``11_1_1``), at any depth, or a disc folder
itself, or a merged copy (``wsj0/si_tr_s/...`` with no disc folders). Names are matched without
regard to case (disc 13-16.1 was pressed in upper case). An index line ``11_2_1:wsj0/si_tr_s/...``
is looked up on its disc, else by its path alone.

Transcripts (:func:`normalize_wsj`, the same for training and scoring; the .dot conventions are
those of the CSR WSJ0 .dot specification, csr-dot-spec.doc):

* noise and event markers ``[loud_breath]``, ``[<door_slam]``, ``[phone_ring/]``, ``[/phone_ring]``
  are removed, and so are ``~`` (truncated waveform) and a lone ``.`` (pause);
* verbal punctuation, read aloud in half of WSJ0 (``\\,COMMA``, ``\\.PERIOD``,
  ``\\"DOUBLE-QUOTE``, ``--DASH``, ``%PERCENT``, ``.POINT``...), becomes the words spoken:
  ``comma``, ``period``, ``double quote``, ``dash``, ``percent``, ``point``;
* ``<word>`` (a word the speaker inserted) and ``*word*`` (a mispronounced word) become ``word``;
* word fragments (``tha-``, ``-ing``, ``wor(d)``) are removed, being no word of the vocabulary;
* escapes (``isn\\'t``, ``I\\.``) and prosodic marks (``:`` lengthening, ``!`` emphasis) go;
* then :func:`asr.text.normalize_text`: lower case, abbreviation dots become spaces
  (``I\\. B\\. M\\.`` → ``i b m``), apostrophes inside words are kept.

Problems (an unparsable index or .dot line, audio or transcript not found, an unreadable audio
header, an empty normalized transcript, a duplicate utterance) are listed as ``location: cause``
— ``file:line`` for index and .dot lines — in ``<set>.problems.txt``; the utterance is skipped.
A set already prepared (manifest and ``<set>.summary.json`` exist) is not prepared again unless
``force`` is set.

Example:
    >>> normalize_wsj(r"[loud_breath] Its stock \\,COMMA <uh> which I\\. B\\. M\\. *sold* tha- [door_slam>]")
    'its stock comma uh which i b m sold'
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from asr.audio import AudioError, audio_info, load_audio
from asr.datasets.librispeech import finished_summary, save_prepared
from asr.manifest import Utterance
from asr.text import normalize_text

logger = logging.getLogger(__name__)

DISC_RE = re.compile(r"^(\d+)[-_](\d+)[._](\d+)$")
NDX_LINE_RE = re.compile(r"^\s*(\d+_\d+_\d+)\s*:\s*(\S+)\s*$")
DOT_LINE_RE = re.compile(r"^(.*)\((\w{8})\)\s*$")
_VP_RE = re.compile(r"^\\?([^\w\s<\[*~\\]+)([A-Z][A-Z_-]+)$")  # \,COMMA  --DASH  %PERCENT
_VP_NAMES = {"COMMA", "PERIOD", "QUOTE", "DOUBLE-QUOTE", "SINGLE-QUOTE", "LEFT-PAREN",
             "RIGHT-PAREN", "HYPHEN", "DASH", "COLON", "SEMI-COLON", "QUESTION-MARK",
             "EXCLAMATION-POINT", "ELLIPSIS", "PERCENT", "POINT"}  # also written "\COMMA"
_INDEXED_SUFFIXES = (".wv1", ".wv2", ".ndx", ".dot")
_SI_TR_S_401 = ("11_2_1", "wsj0/si_tr_s/401/")  # left out of training, as Kaldi does


@dataclass(frozen=True)
class SetSpec:
    """How one standard set is built."""

    indices: tuple[tuple[str, str], ...]  # (disc id, index file path on that disc)
    expected: int  # utterances Kaldi's wsj_data_prep.sh finds on a complete copy
    disc_fix: tuple[str, str] | None = None  # a wrong disc id in the index, and the right one
    training: bool = False  # leave out si_tr_s speaker 401 of disc 11-2.1


_SI84 = ("11_13_1", "wsj0/doc/indices/train/tr_s_wv1.ndx")
SETS: dict[str, SetSpec] = {
    "train_si84": SetSpec((_SI84,), 7138, training=True),
    "train_si284": SetSpec((("13_34_1", "wsj1/doc/indices/si_tr_s.ndx"), _SI84), 37416, training=True),
    "test_eval92": SetSpec((("11_13_1", "wsj0/doc/indices/test/nvp/si_et_20.ndx"),), 333),
    "test_eval92_5k": SetSpec((("11_13_1", "wsj0/doc/indices/test/nvp/si_et_05.ndx"),), 330),
    "test_dev93": SetSpec((("13_34_1", "wsj1/doc/indices/h1_p0.ndx"),), 503),
    "test_dev93_5k": SetSpec((("13_34_1", "wsj1/doc/indices/h2_p0.ndx"),), 513),
    "test_eval93": SetSpec((("13_32_1", "wsj1/doc/indices/wsj1/eval/h1_p0.ndx"),), 213,
                           disc_fix=("13_32_1", "13_33_1")),
    "test_eval93_5k": SetSpec((("13_32_1", "wsj1/doc/indices/wsj1/eval/h2_p0.ndx"),), 215,
                              disc_fix=("13_32_1", "13_33_1")),
}
DEFAULT_SETS = ("train_si284", "train_si84", "test_dev93", "test_eval92", "test_eval93")


class WsjError(ValueError):
    """The WSJ copy cannot be used (no disc or index found); the message names what is missing."""


def normalize_wsj(dot_text: str) -> str:
    """A .dot transcription → the training and scoring transcript (rules in the module doc)."""
    words = []
    for token in dot_text.split():
        if token.startswith("[") or token in ("~", "."):  # noise and event markers, pauses
            continue
        vp = _VP_RE.match(token)
        if vp or (token.startswith("\\") and token[1:] in _VP_NAMES):
            name = vp.group(2) if vp else token[1:]
            words.append(name.lower().replace("-", " ").replace("_", " "))
            continue
        token = token.replace("\\", "")
        if token.startswith("<") and token.endswith(">"):
            token = token[1:-1]
        token = token.strip("*").replace(":", "").replace("!", "")
        if token.startswith("-") or token.endswith("-") or "(" in token or ")" in token:
            continue  # a word fragment
        words.append(token)
    return normalize_text(" ".join(words))


# ---------------------------------------------------------------------------- finding files


class DiscIndex:
    """Every .wv1/.wv2/.ndx/.dot file under the given roots, by (disc id, lower-case path on the
    disc) and by path alone (for merged copies without disc folders)."""

    def __init__(self, roots: list[Path]):
        self.by_disc: dict[tuple[str, str], Path] = {}
        self.by_key: dict[str, list[Path]] = {}
        self.discs: set[str] = set()
        self.dots: dict[str, list[tuple[str, Path]]] = {}  # 6-character prefix -> (key, path)
        for root in roots:
            if not root.is_dir():
                raise WsjError(f"{root}: not a folder")
            for folder, dirs, files in os.walk(root, followlinks=True):
                dirs.sort()
                disc, below = self._locate((root.resolve().name, *Path(folder).relative_to(root).parts))
                if below is None:
                    continue
                for name in sorted(files):
                    if not name.lower().endswith(_INDEXED_SUFFIXES):
                        continue
                    path, key = Path(folder) / name, "/".join((*below, name)).lower()
                    self.by_key.setdefault(key, []).append(path)
                    if disc:
                        self.by_disc.setdefault((disc, key), path)
                    if key.endswith("00.dot") and len(name) == 12:
                        self.dots.setdefault(name[:6].lower(), []).append((key, path))

    def _locate(self, parts: tuple[str, ...]) -> tuple[str | None, tuple[str, ...] | None]:
        """(disc id, folders below the disc) of a folder given as its path components; without a
        disc folder above it, the folders from the last ``wsj0``/``wsj1`` on (``None``: neither)."""
        for i in range(len(parts) - 1, -1, -1):
            m = DISC_RE.match(parts[i])
            if m:
                disc = "_".join(m.groups())
                self.discs.add(disc)
                return disc, parts[i + 1:]
        for i in range(len(parts) - 1, -1, -1):
            if parts[i].lower() in ("wsj0", "wsj1"):
                return None, parts[i:]
        return None, None

    def find(self, disc: str, key: str) -> Path | None:
        key = key.lower().lstrip("/")
        found = self.by_disc.get((disc, key))
        if found is None and key in self.by_key:
            found = self.by_key[key][0]
        return found

    def dot_for(self, uttid: str, audio_key: str) -> Path | None:
        """The .dot file of an utterance's session (``<first 6 chars>00.dot``); of several, the
        one sharing most folders with the audio (WSJ0 keeps .dot files in transcrp/dots/...)."""
        candidates = self.dots.get(uttid[:6], [])
        if not candidates:
            return None
        folders = set(audio_key.split("/")[:-1])
        return max(candidates, key=lambda c: (len(folders & set(c[0].split("/")[:-1])), -len(c[0])))[1]


def find_discs(roots: list[str | Path]) -> DiscIndex:
    """Index the files of the WSJ copies under ``roots`` (see :class:`DiscIndex`).

    Raises:
        WsjError: a root is not a folder, or no WSJ file is found under any of them.
    """
    index = DiscIndex([Path(r) for r in roots])
    if not index.by_key:
        raise WsjError(f"{', '.join(str(r) for r in roots)}: no WSJ disc found "
                       "(no wsj0/ or wsj1/ folder with .ndx, .dot or .wv1 files)")
    return index


# ---------------------------------------------------------------------------- sets


@dataclass
class SetReport:
    """What preparing one set found (cf. :class:`asr.datasets.librispeech.SplitReport`)."""

    name: str
    manifest: Path
    num_utterances: int
    num_words: int
    duration_s: float
    num_skipped: int
    expected: int  # what a complete copy gives
    problems: list[str] = field(default_factory=list)
    reused: bool = False

    def summary(self) -> str:
        note = "" if self.num_utterances == self.expected else f" (a complete copy gives {self.expected})"
        return (f"{self.name}: {self.num_utterances} utterances{note}, {self.num_words} words, "
                f"{self.duration_s / 3600:.2f} h, {self.num_skipped} skipped -> {self.manifest}"
                + (" (already prepared)" if self.reused else ""))


def read_index(path: Path, problems: list[str]) -> list[tuple[int, str, str]]:
    """``(line number, disc id, path)`` of each entry of an .ndx file (comments skipped)."""
    entries = []
    text = path.read_text(encoding="latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        m = NDX_LINE_RE.match(line)
        if m is None:
            problems.append(f"{path}:{number}: cannot parse index line {line.strip()[:80]!r}")
            continue
        entries.append((number, m.group(1), m.group(2).lower().lstrip("/")))
    return entries


def read_dot(path: Path, problems: list[str]) -> dict[str, str]:
    """Utterance id (lower case) → raw transcription, from a .dot file (``text (uttid)`` lines);
    none from a file that cannot be read (a problem: its session's utterances are skipped)."""
    transcripts: dict[str, str] = {}
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        problems.append(f"{path}: cannot be read ({e.strerror or e})")
        return transcripts
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = DOT_LINE_RE.match(line)
        if m is None:
            problems.append(f"{path}:{number}: malformed transcription line (expected "
                            f"'text (utterance id)'): {line.strip()[:80]!r}")
            continue
        uttid = m.group(2).lower()
        if uttid in transcripts:
            problems.append(f"{path}:{number}: second transcription of {uttid} ignored")
            continue
        transcripts[uttid] = m.group(1).strip()
    return transcripts


def read_set(index: DiscIndex, name: str, mic: int = 1, verify: bool = False
             ) -> tuple[list[Utterance], list[str], int]:
    """The utterances of a standard set (sorted by id), the problems met and the number of
    utterances skipped because of them.

    Args:
        index: the files of the WSJ copy (:func:`find_discs`).
        name: a key of :data:`SETS`.
        mic: 1 for the Sennheiser close-talking microphone (``.wv1``), 2 for the secondary one.
        verify: decode every file (checks SPHERE ``sample_count`` and ``sample_checksum``)
            instead of reading headers only.

    Raises:
        WsjError: unknown set, or one of its index files is not in the copy.
    """
    if name not in SETS:
        raise WsjError(f"unknown WSJ set {name!r} (known: {', '.join(SETS)})")
    spec, problems = SETS[name], []
    entries = []
    for disc, ndx_key in spec.indices:
        ndx = index.find(disc, ndx_key)
        if ndx is None:
            raise WsjError(f"{name}: index file {disc.replace('_', '-', 1).replace('_', '.')}/"
                           f"{ndx_key} not found (is the disc among --wsj0/--wsj1?)")
        entries += [(ndx, *entry) for entry in read_index(ndx, problems)]
    skipped = len(problems)  # index lines that could not be parsed: entries skipped
    dots: dict[Path, dict[str, str]] = {}
    seen: dict[str, str] = {}
    utts = []

    def skip(problem: str) -> None:
        nonlocal skipped
        problems.append(problem)
        skipped += 1

    for ndx, number, disc, key in entries:
        where = f"{ndx}:{number}"
        if spec.disc_fix and disc == spec.disc_fix[0]:
            disc = spec.disc_fix[1]
        if spec.training and disc == _SI_TR_S_401[0] and key.startswith(_SI_TR_S_401[1]):
            continue
        stem, suffix = os.path.splitext(key)
        if suffix not in (".wv1", ".wv2"):
            stem = key  # the eval'92 indices give no extension
        key = f"{stem}.wv{mic}"
        uttid = os.path.basename(stem)
        if uttid in seen:
            skip(f"{where}: duplicate utterance {uttid} (first at {seen[uttid]})")
            continue
        seen[uttid] = where
        audio = index.find(disc, key)
        if audio is None:
            skip(f"{where}: audio {disc}:{key} not found")
            continue
        dot = index.dot_for(uttid, key)
        if dot is None:
            skip(f"{where}: no transcription for {uttid} (no {uttid[:6]}00.dot file)")
            continue
        if dot not in dots:
            dots[dot] = read_dot(dot, problems)
        if uttid not in dots[dot]:
            skip(f"{where}: no transcription for {uttid} in {dot}")
            continue
        text = normalize_wsj(dots[dot][uttid])
        if not text:
            skip(f"{where}: {uttid}: empty transcript after normalization ({dots[dot][uttid][:60]!r})")
            continue
        try:
            if verify:
                load_audio(audio, sample_rate=None)
            info = audio_info(audio)
        except AudioError as e:
            skip(f"{where}: {e}")
            continue
        utts.append(Utterance(audio_filepath=str(audio.resolve()), duration=info.duration_s,
                              text=text, speaker=uttid[:3]))
    utts.sort(key=lambda u: os.path.basename(u.audio_filepath).lower())
    return utts, problems, skipped


def prepare_wsj(wsj0: list[str | Path], wsj1: list[str | Path], out_dir: str | Path,
                sets: list[str] | None = None, mic: int = 1, verify: bool = False,
                force: bool = False) -> list[SetReport]:
    """Write ``out_dir/<set>.jsonl`` (and ``.summary.json``, ``.problems.txt``) for each set.

    Args:
        wsj0, wsj1: folders holding the WSJ0 and WSJ1 discs (either may be empty when the sets
            asked for need only the other).
        out_dir: where the manifests go (audio paths in them point at the discs).
        sets: set names (default :data:`DEFAULT_SETS`).
        mic: 1 (``.wv1``, Sennheiser) or 2 (``.wv2``, the secondary microphone).
        verify: decode all audio (slow) instead of reading headers.
        force: prepare again sets already prepared.

    Raises:
        WsjError: no disc found, an unknown set, or an index file missing.
    """
    if mic not in (1, 2):
        raise WsjError(f"mic must be 1 or 2, got {mic}")
    names = list(sets or DEFAULT_SETS)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise WsjError(f"unknown WSJ set(s) {', '.join(unknown)} (known: {', '.join(SETS)})")
    out_dir = Path(out_dir)
    index: DiscIndex | None = None
    reports = []
    for name in names:
        manifest, summary_path = out_dir / f"{name}.jsonl", out_dir / f"{name}.summary.json"
        if not force and (saved := finished_summary(manifest, summary_path, SetReport)) is not None:
            reports.append(saved)
            continue
        if index is None:
            if not [*wsj0, *wsj1]:
                raise WsjError("no WSJ folder given (--wsj0 DIR and/or --wsj1 DIR)")
            index = find_discs([*wsj0, *wsj1])
        utts, problems, skipped = read_set(index, name, mic=mic, verify=verify)
        expected = SETS[name].expected
        report = SetReport(name, manifest, len(utts), sum(len(u.text.split()) for u in utts),
                           sum(u.duration for u in utts), skipped, expected, problems)
        save_prepared(report, utts, force=force)
        if len(utts) != expected:
            logger.warning("set=%s utterances=%d expected=%d (a complete copy)", name, len(utts),
                           expected)
        logger.info("set=%s utterances=%d hours=%.3f skipped=%d", name, len(utts),
                    report.duration_s / 3600, skipped)
        reports.append(report)
    return reports

"""MUSAN (OpenSLR SLR17: music, speech and noise recordings, 16 kHz wav) as noise manifests.

``asr download musan`` fetches and extracts the corpus to ``DEST/musan/``; ``asr prepare musan``
writes one manifest per category found (``musan-noise.jsonl``, ``musan-music.jsonl``,
``musan-speech.jsonl``, with ``.summary.json`` and ``.problems.txt`` as for LibriSpeech), whose
``text`` is empty: they are for ``augment.noise_manifest``, not for training targets. Durations
come from the file headers; an unreadable file or folder is listed as a problem and left out.

Layout read: ``musan/<category>/<source>/*.wav``, the suffix in any case (``.WAV`` from a copy made on
another system); the README, LICENSE and ANNOTATIONS files are ignored.

Example:
    >>> CATEGORIES
    ('noise', 'music', 'speech')
"""

from __future__ import annotations

import os
from pathlib import Path

from asr.audio import AudioError, audio_info
from asr.datasets.librispeech import SplitReport, prepared_split, write_split
from asr.manifest import Utterance

CATEGORIES = ("noise", "music", "speech")


def find_musan(data_dir: str | Path) -> Path:
    """The MUSAN folder in ``data_dir``: itself, or its ``musan/`` child (a download folder).

    Raises:
        FileNotFoundError: neither holds a ``noise``, ``music`` or ``speech`` folder.
    """
    data_dir = Path(data_dir)
    for root in (data_dir, data_dir / "musan"):
        if any((root / c).is_dir() for c in CATEGORIES):
            return root
    raise FileNotFoundError(f"{data_dir}: no MUSAN tree (expected noise/, music/ or speech/ in it or in musan/)")


def read_category(folder: Path) -> tuple[list[Utterance], list[str], int]:
    """The recordings of one category folder, sorted by path: ``(utterances, problems, skipped)``.
    A folder that cannot be read is a problem (its recordings are left out, uncounted)."""
    utts, problems, closed = [], [], []
    paths = []
    for top, _, files in os.walk(folder, onerror=closed.append):
        paths += [Path(top) / name for name in files if name.lower().endswith(".wav")]  # .WAV too
    problems += [f"{e.filename}: cannot be read ({e.strerror or e}); its recordings are left out" for e in closed]
    skipped = 0
    for path in sorted(paths):
        try:
            info = audio_info(path)
        except AudioError as e:
            problems.append(str(e))
            skipped += 1
            continue
        if info.duration_s <= 0:
            problems.append(f"{path}: no samples")
            skipped += 1
            continue
        utts.append(Utterance(str(path), info.duration_s, ""))
    return utts, problems, skipped


def prepare_musan(data_dir: str | Path, out_dir: str | Path, force: bool = False) -> list[SplitReport]:
    """Write ``out_dir/musan-<category>.jsonl`` for each category folder of the MUSAN tree.

    A category already prepared (its manifest and summary exist) is not read again unless ``force``.

    Raises:
        FileNotFoundError: no MUSAN tree in ``data_dir`` (see :func:`find_musan`).
    """
    root, out_dir = find_musan(data_dir), Path(out_dir)
    reports = []
    for category in CATEGORIES:
        if not (root / category).is_dir():
            continue
        name = f"musan-{category}"
        report = None if force else prepared_split(out_dir, name)
        reports.append(report or write_split(out_dir, name, *read_category(root / category), force=force))
    return reports

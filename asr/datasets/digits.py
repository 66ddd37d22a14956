"""Free Spoken Digit Dataset (FSDD): find or download it, resample to 16 kHz, write manifests.

FSDD v1.0.10 holds 3,000 8 kHz wavs named ``{digit}_{speaker}_{index}.wav`` (6 speakers x 10 digits
x 50 takes). Splits:

- ``official``: takes 0-4 of every speaker and digit are the test set, 5-49 the training set
  (the split FSDD's README prescribes);
- ``speaker``: every take of ``test_speaker`` is the test set, the other speakers train
  (speaker-independent, much harder with six speakers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asr.audio import AudioError, load_audio
from asr.datasets.download import (DONE_MARKER, PARTIAL_MARKER, DownloadError, TargetError, download, extract_tar,
                                   mark_extracted, refuse_foreign)
from asr.manifest import Utterance, manifest_lines
from asr.outputs import atomic_output, check_output, holds
from asr.paths import file_digest

logger = logging.getLogger(__name__)

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OUTPUTS = ("train.jsonl", "test.jsonl", "words.txt")
SUMMARY = "digits.summary.json"  # the split and the SHA-256 of each output, written last
NAME_RE = re.compile(r"^(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$")


class DigitsError(ValueError):
    """An impossible split of the recordings: an unknown split name, or a test speaker not in the data."""


@dataclass(frozen=True)
class DigitsSplit:
    train: Path
    test: Path
    num_train: int
    num_test: int
    skipped: int
    words: Path  # the ten digit words, one per line: a closed-vocabulary lexicon for decoding


def find_recordings(data_dir: str | Path | None, download_dir: str | Path = "data/fsdd", url: str = FSDD_URL) -> Path:
    """The ``recordings/`` folder of an FSDD copy: ``data_dir`` if given, else a download.

    ``data_dir`` may be the folder holding ``recordings/`` or ``recordings/`` itself. A download
    (of ``url`` into ``download_dir``) counts as done only once its archive is wholly extracted
    (``download_dir/.complete``); an archive that does not extract is removed, so that the next
    run fetches it again (FSDD publishes no checksum to check it against), unless what stands in
    the way is in ``download_dir`` (a file where the archive makes a folder, ...). An extraction
    marks ``download_dir/.partial`` before its first file, so a run after an interrupted one
    extracts over what it began; a ``download_dir`` holding other files and neither marker (the
    user's) is refused before the download.

    Raises:
        FileNotFoundError: ``data_dir`` holds no FSDD recordings.
        DownloadError: the download or its extraction failed, or ``download_dir`` holds files
            that no extraction of ours began.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
        for candidate in (data_dir / "recordings", data_dir):
            if candidate.is_dir() and any(NAME_RE.match(p.name) for p in candidate.glob("*.wav")):
                return candidate
        raise FileNotFoundError(f"{data_dir}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) found")
    download_dir = Path(download_dir)
    done = download_dir / DONE_MARKER
    existing = sorted(download_dir.glob("*/recordings"))
    if existing and done.is_file():
        return existing[0]
    archive = download_dir / "fsdd-v1.0.10.tar.gz"
    refuse_foreign(download_dir, "move them away, or give the FSDD folder with --data-dir",
                   expected=(archive.name, archive.name + ".part"))
    download(url, archive)
    try:
        extract_tar(archive, download_dir, marker=download_dir / PARTIAL_MARKER)
    except TargetError:  # the archive is sound: kept for the run after the way is cleared
        raise
    except DownloadError as e:
        archive.unlink()
        raise DownloadError(f"{e}; the archive was removed: run again to download it again") from None
    found = sorted(download_dir.glob("*/recordings"))
    if not found:
        raise FileNotFoundError(f"{archive}: the archive holds no recordings/ folder")
    mark_extracted(download_dir, f"{url}\n")
    return found[0]


def prepare_digits(
    recordings: str | Path, out_dir: str | Path, split: str = "official", test_speaker: str = "theo",
    sample_rate: int = 16000,
) -> DigitsSplit:
    """Resample every recording to ``sample_rate`` under ``out_dir/wav`` and write the manifests.

    Work already done is skipped: a resampled file that exists is not written again. Unreadable
    recordings are logged with their path and skipped (counted in ``DigitsSplit.skipped``). The
    manifests and ``words.txt`` are written again only if this function wrote them and they are
    unchanged since (``digits.summary.json`` records their SHA-256), or if they hold exactly what
    a run of either split (with any test speaker) makes of these recordings: left by a run stopped
    before its summary, they are kept as they are when they hold what this run makes, replaced
    when they hold another split's. Any other file there, such as a manifest edited by hand, is
    refused with nothing written in its place: before any work, or once the missing audio is
    resampled for a file that holds what the audio already there makes.

    Returns:
        The paths of ``train.jsonl`` and ``test.jsonl`` in ``out_dir`` and their sizes, and of
        ``words.txt``: the ten digit words, a lexicon for ``asr evaluate --lexicon``.
    Raises:
        DigitsError: unknown split, or the test speaker is not in the data (nothing is written then).
        OutputError: an output file there was changed since, or not written by this function.
    """
    if split not in ("official", "speaker"):
        raise DigitsError(f"split {split!r} is not 'official' or 'speaker'")
    recordings, out_dir = Path(recordings), Path(out_dir)
    wav_dir = out_dir / "wav"
    named = sorted(p for p in recordings.glob("[0-9]_*") if p.suffix.lower() == ".wav")  # one listing
    files = [p for p in named if NAME_RE.match(p.name)]
    misnamed = [p.name for p in named if not NAME_RE.match(p.name)]  # renamed by hand, or a copy of one
    if misnamed:
        logger.warning("%s: %d .wav files named like recordings are left out: they do not fit "
                       "{digit}_{speaker}_{index}.wav (speaker in lower case), e.g. %s",
                       recordings, len(misnamed), misnamed[0])
    speakers = {NAME_RE.match(p.name)["speaker"] for p in files}
    if split == "speaker" and test_speaker not in speakers:
        raise DigitsError(f"test speaker {test_speaker!r} not in {recordings} (speakers: {', '.join(sorted(speakers))})")
    unchanged = _unchanged_outputs(out_dir)
    left: dict[str, list[bytes]] = {}  # what a stopped run may have left, of the audio there
    if any(os.path.lexists(out_dir / name) and name not in unchanged for name in OUTPUTS):
        left = _outputs_of_any_split(out_dir, _utterances(files, wav_dir, sample_rate, resample=False)[0], speakers)
    _check_outputs(out_dir, unchanged, left)  # before any work: a manifest edited by hand is not replaced
    wav_dir.mkdir(parents=True, exist_ok=True)
    utts, problems = _utterances(files, wav_dir, sample_rate)
    for problem in problems:
        logger.warning("%s", problem)
    if problems:
        logger.warning("skipped %d unreadable recordings of %d", len(problems), len(files))
    train, test = _split(utts, split, test_speaker)
    outputs = _outputs(out_dir, train, test)
    if left:  # again, with every duration known; nothing is written yet
        _check_outputs(out_dir, unchanged, _outputs_of_any_split(out_dir, utts, speakers))
    for name, data in outputs.items():
        if not holds(out_dir / name, [data]):  # one that holds it already (a stopped run's) is kept as it is
            with atomic_output(out_dir / name, durable=True) as tmp:
                tmp.write_bytes(data)
    summary = {"split": split, "test_speaker": test_speaker if split == "speaker" else None,
               "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in outputs.items()}}
    with atomic_output(out_dir / SUMMARY) as tmp:  # last: the record of what this run wrote
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return DigitsSplit(out_dir / "train.jsonl", out_dir / "test.jsonl", len(train), len(test), len(problems),
                       out_dir / "words.txt")


def _utterances(files: list[Path], wav_dir: Path, sample_rate: int,
                resample: bool = True) -> tuple[list[Utterance], list[str]]:
    """The utterances of the recordings ``files``, read from their copies at ``sample_rate`` in
    ``wav_dir`` (a missing copy is made if ``resample``, else the recording is left out), and one
    problem line per unreadable recording (left out)."""
    utts: list[Utterance] = []
    problems: list[str] = []
    for path in files:
        m = NAME_RE.match(path.name)
        target = wav_dir / path.name
        if not resample and not target.is_file():
            continue
        try:
            if not target.is_file():
                wave = load_audio(path, sample_rate=sample_rate)
                with atomic_output(target, suffix=".wav") as tmp:
                    sf.write(tmp, wave, sample_rate, subtype="PCM_16")
            duration = sf.info(target).duration
        except (AudioError, RuntimeError) as e:
            problems.append(str(e))
            continue
        utts.append(Utterance(audio_filepath=str(target.resolve()), duration=duration,
                              text=DIGIT_WORDS[int(m["digit"])], speaker=m["speaker"]))
    return utts, problems


def _split(utts: list[Utterance], split: str, test_speaker: str) -> tuple[list[Utterance], list[Utterance]]:
    """The train and test utterances of ``split`` (see the module docstring)."""
    train: list[Utterance] = []
    test: list[Utterance] = []
    for utt in utts:
        m = NAME_RE.match(Path(utt.audio_filepath).name)
        is_test = int(m["index"]) < 5 if split == "official" else m["speaker"] == test_speaker
        (test if is_test else train).append(utt)
    return train, test


def _outputs(out_dir: Path, train: list[Utterance], test: list[Utterance]) -> dict[str, bytes]:
    """What each of ``OUTPUTS`` holds for these utterances, by name."""
    return {"train.jsonl": "".join(manifest_lines(out_dir / "train.jsonl", train)).encode("utf-8"),
            "test.jsonl": "".join(manifest_lines(out_dir / "test.jsonl", test)).encode("utf-8"),
            "words.txt": "".join(w + "\n" for w in DIGIT_WORDS).encode("utf-8")}


def _outputs_of_any_split(out_dir: Path, utts: list[Utterance], speakers: set[str]) -> dict[str, list[bytes]]:
    """What each of ``OUTPUTS`` holds after a run of any split over these utterances: the official
    one, and the speaker one with each speaker as the test speaker."""
    made: dict[str, list[bytes]] = {name: [] for name in OUTPUTS}
    for split, test_speaker in [("official", ""), *(("speaker", s) for s in sorted(speakers))]:
        for name, data in _outputs(out_dir, *_split(utts, split, test_speaker)).items():
            made[name].append(data)
    return made


def _check_outputs(out_dir: Path, unchanged: set[str], expected: dict[str, list[bytes]]) -> None:
    """Refuse an output in ``out_dir`` that is neither among ``unchanged`` nor holds exactly one of
    ``expected[name]`` (see :func:`asr.outputs.check_output` for the errors)."""
    for name in OUTPUTS:
        check_output(out_dir / name,
                     lambda path, name=name: name in unchanged or any(holds(path, [d]) for d in expected.get(name, [])),
                     f"the {name} asr prepare digits wrote or makes now (it was changed since, or not written by it)")


def _unchanged_outputs(out_dir: Path) -> set[str]:
    """The names among ``OUTPUTS`` that a finished ``prepare_digits`` wrote in ``out_dir`` and that
    are unchanged since (their SHA-256 is the one its summary recorded): free to write again."""
    try:
        recorded = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8"))["sha256"]
        return {name for name in OUTPUTS if (out_dir / name).is_file() and file_digest(out_dir / name) == recorded[name]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()



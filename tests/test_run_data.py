"""What a run reads before it trains (asr.run_data): manifest durations checked against the audio."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.manifest import read_manifest
from asr.run_data import TRAIN_AUDIO_PROBES, check_run_audio
from asr.train_config import DataConfig, TrainConfig


@pytest.fixture(scope="module")
def digits(shared_data: Path) -> list[dict]:
    """Manifest entries of 70 FSDD recordings (8 kHz, 0.27-0.74 s), durations from their headers."""
    paths = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[:70]
    return [{"audio_filepath": str(p), "duration": round(sf.info(p).duration, 2), "text": p.name[0]} for p in paths]


@pytest.fixture(scope="module")
def libri(shared_data: Path) -> list[dict]:
    """Manifest entries of the 6 first utterances of a dev-4spk chapter (16 kHz FLAC, a few seconds each)."""
    paths = sorted((shared_data / "LibriSpeech" / "dev-4spk" / "4088" / "158077").glob("*.flac"))[:6]
    return [{"audio_filepath": str(p), "duration": round(sf.info(p).duration, 2), "text": "a"} for p in paths]


def _manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


def _check(tmp_path: Path, train: list[dict], dev: list[dict] | None, caplog) -> list[str]:
    """The warnings ``check_run_audio`` gives for manifests of ``train`` and ``dev``."""
    train_manifest = _manifest(tmp_path / "train.jsonl", train)
    dev_manifest = _manifest(tmp_path / "dev.jsonl", dev) if dev else None
    cfg = TrainConfig(preset="tiny", data=DataConfig(train_manifest=str(train_manifest),
                                                     dev_manifest=str(dev_manifest) if dev_manifest else None))
    utts = read_manifest(train_manifest)
    dev_utts = read_manifest(dev_manifest) if dev_manifest else []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asr.run_data"):
        check_run_audio(cfg, utts, dev_utts)
    return [r.getMessage() for r in caplog.records]


def test_manifests_with_the_audios_durations_give_no_warning(tmp_path, digits, libri, caplog):
    assert _check(tmp_path, digits, libri, caplog) == []
    within = [dict(e, duration=e["duration"] * 1.04) for e in libri]  # 4 %: rounding, encoder padding
    within += [dict(e, duration=e["duration"] + 0.09) for e in digits[:5]]  # short clips: under 0.1 s
    assert _check(tmp_path, within, None, caplog) == []


def test_durations_written_for_another_sample_rate_are_one_warning_with_the_worst(tmp_path, digits, caplog):
    """8 kHz files whose manifest took their sample counts for 16 kHz ones: each duration half the
    real one, so the batches hold twice the audio data.max_batch_s plans and the reads stop halfway."""
    halved = [dict(e, duration=round(sf.info(e["audio_filepath"]).frames / 16000, 4)) for e in digits]
    warnings = _check(tmp_path, halved, None, caplog)
    assert len(warnings) == 1
    manifest = re.escape(str(tmp_path / "train.jsonl"))
    found = re.fullmatch(
        rf"{manifest}: {TRAIN_AUDIO_PROBES} of {TRAIN_AUDIO_PROBES} utterances checked have a duration more than "
        rf"5 % \(and 0\.1 s\) off their audio's, e\.g\. {manifest}:(\d+): (\S+): manifest ([\d.]+) s, audio "
        r"([\d.]+) s; batches \(data\.max_batch_s\) and SortaGrad go by the manifest's durations, and audio is "
        r"read only up to them: was the manifest written for these files\?", warnings[0])
    assert found, warnings[0]
    line, path, said, real = int(found[1]), found[2], float(found[3]), float(found[4])
    assert path == halved[line - 1]["audio_filepath"]
    assert said == pytest.approx(halved[line - 1]["duration"], abs=0.005)
    assert real == pytest.approx(sf.info(path).duration, abs=0.005)
    assert real == pytest.approx(2 * said, abs=0.01)


def test_durations_copied_from_another_set_name_how_many_differ(tmp_path, digits, libri, caplog):
    """The dev manifest's durations are another set's: every file is read, the count is exact."""
    copied = [dict(e, duration=d["duration"]) for e, d in zip(libri, digits)]  # seconds of speech vs < 1 s
    copied[0]["duration"] = libri[0]["duration"]  # one right
    warnings = _check(tmp_path, digits[:10], copied, caplog)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{tmp_path / 'dev.jsonl'}: 5 of 6 utterances checked have a duration")
    worst = max(range(1, 6), key=lambda i: sf.info(copied[i]["audio_filepath"]).duration - copied[i]["duration"])
    assert f"e.g. {tmp_path / 'dev.jsonl'}:{worst + 1}: {copied[worst]['audio_filepath']}: " in warnings[0]


def test_segments_of_a_file_may_be_shorter_than_it_but_not_run_past_its_end(tmp_path, libri, caplog):
    whole = libri[0]
    total = sf.info(whole["audio_filepath"]).duration
    half = round(total / 2, 2)
    segments = [dict(whole, duration=half), dict(whole, offset=half, duration=round(total - half, 2))]
    trimmed = [dict(libri[1], offset=0.3, duration=1.0)]  # one segment, read from an offset
    assert _check(tmp_path, segments + trimmed, None, caplog) == []

    past = [dict(whole, duration=half), dict(whole, offset=half, duration=total)]  # ends total / 2 too late
    warnings = _check(tmp_path, past, None, caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"{tmp_path / 'train.jsonl'}: 1 of 2 utterances checked")
    assert f"train.jsonl:2: {whole['audio_filepath']}: manifest {total:.2f} s, audio {total - half:.2f} s" \
           in warnings[0]


def test_a_whole_file_with_a_shorter_duration_is_counted(tmp_path, libri, caplog):
    """A file read whole (once, no offset) whose manifest gives it less than it holds: training reads
    only the manifest's seconds, cutting off speech its transcript has; 0 s (read whole) as well."""
    entries = [dict(libri[0], duration=1.0), dict(libri[1], duration=0), *libri[2:]]
    warnings = _check(tmp_path, entries, None, caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"{tmp_path / 'train.jsonl'}: 2 of 6 utterances checked")


def test_unreadable_files_are_not_compared(tmp_path, libri, caplog):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(40))
    dev = [libri[0], {"audio_filepath": str(broken), "duration": 9.0, "text": "a"}]
    warnings = _check(tmp_path, libri, dev, caplog)
    assert len(warnings) == 1 and "1 of 2 dev utterances cannot be read" in warnings[0]


def test_audio_made_in_the_test_at_another_rate(tmp_path, caplog):
    """A 44.1 kHz recording listed with the duration it would have at 48 kHz: 8 % off, counted."""
    path = tmp_path / "tone.wav"
    rate = 44100
    sf.write(path, (0.1 * np.sin(np.arange(3 * rate) * 0.05)).astype(np.float32), rate)
    entry = {"audio_filepath": str(path), "duration": 3 * rate / 48000, "text": "a"}
    warnings = _check(tmp_path, [entry], None, caplog)
    assert len(warnings) == 1 and "manifest 2.76 s, audio 3.00 s" in warnings[0]
    assert _check(tmp_path, [dict(entry, duration=3.0)], None, caplog) == []

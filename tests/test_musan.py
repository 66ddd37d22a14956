"""MUSAN (SLR17): download from a local HTTP server, noise manifests, and their use as the noise
source of training augmentation. The archive is made here in MUSAN's layout, from synthetic noise
and music and one real LibriSpeech recording."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.augment import AugmentConfig, NoiseSource, WaveAugment
from asr.cli import main
from asr.datasets.openslr import FILES
from asr.manifest import read_manifest
from test_openslr import _targz  # tests/ is on sys.path under pytest


def _wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture
def musan_archive(shared_data: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    speech = load_audio(shared_data / "LibriSpeech/dev-4spk/8226/274371/8226-274371-0020.flac")
    t = np.arange(16000 * 3) / 16000
    return {
        "musan/README": b"MUSAN test tree\n",
        "musan/noise/free-sound/ANNOTATIONS": b"noise-free-sound-0000\n",
        "musan/noise/free-sound/noise-free-sound-0000.wav": _wav(0.1 * rng.standard_normal(16000 * 2)),
        "musan/noise/free-sound/noise-free-sound-0001.wav": b"RIFF\x00\x00\x00\x00not a wav at all",
        "musan/music/fma/music-fma-0000.wav": _wav(0.2 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * t)),
        "musan/speech/librivox/speech-librivox-0000.wav": _wav(speech),
    }


@pytest.fixture
def served(http_server, musan_archive, monkeypatch) -> str:
    data = _targz(musan_archive)
    http_server.files["/17/musan.tar.gz"] = data
    monkeypatch.setitem(FILES, "musan", dataclasses.replace(FILES["musan"], size=len(data),
                                                             md5=hashlib.md5(data).hexdigest()))
    return http_server.url


def test_download_prepare_and_mix_musan_noise(served, tmp_path, capsys):
    assert FILES["musan"].url() == "https://www.openslr.org/resources/17/musan.tar.gz"
    dest, out = tmp_path / "dl", tmp_path / "manifests"
    assert main(["download", "musan", "--dest", str(dest), "--base-url", served]) == 0
    assert (dest / "musan/.complete").is_file() and (dest / "musan/music/fma/music-fma-0000.wav").is_file()
    capsys.readouterr()

    assert main(["prepare", "musan", "--data-dir", str(dest), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("musan-noise: 1 utterances, 0 words, 0.00 h, 1 skipped -> ")
    assert "1 problems, listed in" in lines[1] and "musan-noise.problems.txt" in lines[1]
    assert [line.split(":")[0] for line in lines[2:]] == ["musan-music", "musan-speech"]
    problems = (out / "musan-noise.problems.txt").read_text()
    assert "noise-free-sound-0001.wav" in problems and len(problems.splitlines()) == 1
    noise = read_manifest(out / "musan-noise.jsonl")
    assert len(noise) == 1 and noise[0].text == "" and noise[0].duration == pytest.approx(2.0)
    speech = read_manifest(out / "musan-speech.jsonl")
    assert speech[0].duration == pytest.approx(sf.info(speech[0].audio_filepath).duration)
    assert json.loads((out / "musan-music.summary.json").read_text())["num_utterances"] == 1

    # the manifest is a noise source for training: a random segment, mixed at the drawn SNR
    source = NoiseSource(str(out / "musan-noise.jsonl"), 16000)
    segment = source.sample(8000)
    assert segment.shape == (8000,) and 0.05 < float(segment.std()) < 0.2
    clean = torch.from_numpy(load_audio(speech[0].audio_filepath))[:32000]
    augment = WaveAugment(AugmentConfig(noise_manifest=str(out / "musan-noise.jsonl"), noise_snr_db=(10.0, 10.0)), 16000)
    noisy = augment(clean)
    snr_db = 10 * torch.log10(clean.pow(2).sum() / (noisy - clean).pow(2).sum())
    assert float(snr_db) == pytest.approx(10.0, abs=0.5)

    # a second run reads the summaries, not the audio
    assert main(["prepare", "musan", "--data-dir", str(dest / "musan"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("(already prepared)") == 3


def test_prepare_musan_without_a_tree_is_one_line(tmp_path, capsys):
    assert main(["prepare", "musan", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr: error: ") and "no MUSAN tree" in err[0]


def test_a_folder_we_may_not_read_is_a_problem_not_left_out_silently(musan_archive, unprivileged, capsys):
    """A source folder closed to us (chmod 0): named in the problems, the other recordings kept
    (rglob passed over it in silence: its recordings were missing from the manifest, unsaid)."""
    folder, as_user = unprivileged
    for name, data in musan_archive.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    closed = folder / "musan/noise/sound-bible"
    closed.mkdir()
    (closed / "noise-sound-bible-0000.wav").write_bytes(musan_archive["musan/noise/free-sound/noise-free-sound-0000.wav"])
    closed.chmod(0)
    with as_user():
        assert main(["prepare", "musan", "--data-dir", str(folder / "musan"), "--out", str(folder / "out")]) == 0
    problems = (folder / "out/musan-noise.problems.txt").read_text().splitlines()
    assert problems[0] == f"{closed}: cannot be read (Permission denied); its recordings are left out"
    assert len(problems) == 2 and "noise-free-sound-0001.wav" in problems[1]  # the damaged one, as before
    assert [Path(u.audio_filepath).name for u in read_manifest(folder / "out/musan-noise.jsonl")] == [
        "noise-free-sound-0000.wav"]
    assert "musan-noise: 1 utterances, 0 words, 0.00 h, 1 skipped" in capsys.readouterr().out


def test_upper_case_wav_suffixes_are_recordings(tmp_path, capsys):
    """A copy whose files end in .WAV or .Wav (made on a case-insensitive file system): each is a
    recording of its category (only .wav was read: they were left out of the manifest, unsaid)."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "musan/noise/free-sound"
    folder.mkdir(parents=True)
    names = ["noise-free-sound-0000.wav", "noise-free-sound-0001.WAV", "noise-free-sound-0002.Wav"]
    for i, name in enumerate(names):
        sf.write(folder / name, 0.1 * rng.standard_normal(16000 * (i + 1)), 16000, subtype="PCM_16")
    (folder / "ANNOTATIONS").write_text("not audio\n")
    assert main(["prepare", "musan", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    noise = read_manifest(tmp_path / "out/musan-noise.jsonl")
    assert [Path(u.audio_filepath).name for u in noise] == names
    assert [u.duration for u in noise] == pytest.approx([1.0, 2.0, 3.0])
    assert "musan-noise: 3 utterances, 0 words, 0.00 h, 0 skipped" in capsys.readouterr().out

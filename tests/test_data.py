"""Manifests, dataset, duration batch sampler and collate, on the real speech in ../shared/data."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from asr.audio import AudioError, load_audio
from asr.data import (AudioCache, Batch, DurationBatchSampler, Example, SpeechDataset, Unreadable, ReadLog,
                      collate, iter_waves, warn_long_utterances)
from asr.manifest import ManifestError, Utterance, read_manifest, read_manifest_report, write_manifest
from asr.text import normalize_text
from asr.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def libri(shared_data: Path) -> list[Utterance]:
    """The 496 utterances of LibriSpeech/dev-4spk, durations from the FLAC headers."""
    utts = []
    for trans in sorted((shared_data / "LibriSpeech" / "dev-4spk").glob("*/*/*.trans.txt")):
        speaker = trans.name.split("-")[0]
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            path = trans.parent / f"{uid}.flac"
            info = sf.info(str(path))
            utts.append(Utterance(str(path), info.frames / info.samplerate, text, 0.0, speaker))
    assert len(utts) == 496
    return utts


@pytest.fixture(scope="module")
def durations(libri: list[Utterance]) -> list[float]:
    return [u.duration for u in libri]


@pytest.fixture
def an4_root(shared_data: Path, tmp_path: Path) -> Path:
    """A root where the an4-subset manifests' paths (``tests/data/asr/...``) resolve."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(shared_data / "an4-subset")
    return tmp_path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _line(path: str | Path, duration: float = 1.0, text: str = "hi", **extra) -> str:
    return json.dumps({"audio_filepath": str(path), "duration": duration, "text": text, **extra})


# ---------------------------------------------------------------------------- manifests


def test_read_manifest_resolves_relative_paths(tmp_path: Path, libri: list[Utterance]):
    folder = tmp_path / "sub"
    folder.mkdir()
    a, b = libri[0], libri[1]
    lines = [
        _line(os.path.relpath(a.audio_filepath, folder), a.duration, a.text, speaker=4088,
              lang="en"),  # unknown keys are ignored
        "",
        "   ",
        _line(b.audio_filepath, 2.5, "x", offset=1.25, speaker="s2"),
    ]
    utts = read_manifest(_write_lines(folder / "m.jsonl", lines))
    assert utts == [
        Utterance(a.audio_filepath, a.duration, a.text, 0.0, "4088"),
        Utterance(b.audio_filepath, 2.5, "x", 1.25, "s2"),
    ]
    assert all(os.path.isabs(u.audio_filepath) for u in utts)


BAD_LINES = [
    ('{"audio_filepath": ', "invalid JSON: Expecting value (column 20)"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"audio_filepath": "A", "text": "hi"}', "missing key 'duration'"),
    ('{"duration": 1.0, "text": "hi"}', "missing key 'audio_filepath'"),
    ('{"audio_filepath": "A", "duration": "3.2", "text": "hi"}',
     "'duration' must be a number, got str '3.2'"),
    ('{"audio_filepath": "A", "duration": true, "text": "hi"}',
     "'duration' must be a number, got bool True"),
    ('{"audio_filepath": "A", "duration": -1, "text": "hi"}',
     "'duration' must be finite and >= 0, got -1"),
    ('{"audio_filepath": "A", "duration": NaN, "text": "hi"}',
     "'duration' must be finite and >= 0, got nan"),
    ('{"audio_filepath": "A", "duration": Infinity, "text": "hi"}',
     "'duration' must be finite and >= 0, got inf"),
    ('{"audio_filepath": "A", "duration": 1.0, "text": 5}', "'text' must be a string, got int 5"),
    ('{"audio_filepath": 7, "duration": 1.0, "text": "hi"}',
     "'audio_filepath' must be a string, got int 7"),
    ('{"audio_filepath": "A", "duration": 1.0, "text": "hi", "offset": -0.5}',
     "'offset' must be finite and >= 0, got -0.5"),
]


@pytest.mark.parametrize("bad, cause", BAD_LINES)
def test_read_manifest_error_names_file_line_and_cause(tmp_path, libri, bad, cause):
    # line 1 good, line 2 blank, line 3 bad: the reported number is the physical line
    good = _line(libri[0].audio_filepath)
    path = _write_lines(tmp_path / "manifest.jsonl", [good, "", bad.replace('"A"', json.dumps(
        libri[0].audio_filepath))])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}:3: {cause}"
    assert (err.value.line, err.value.cause) == (3, cause)


def test_read_manifest_missing_audio(tmp_path: Path):
    path = _write_lines(tmp_path / "manifest.jsonl", [_line("wav/nope.wav")])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}:1: audio file not found: {tmp_path}/wav/nope.wav"
    assert read_manifest(path, check_audio=False)[0].audio_filepath == f"{tmp_path}/wav/nope.wav"


def test_read_manifest_unreadable_file(tmp_path: Path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}: cannot read manifest: No such file or directory"


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
                                            ("utf-32", "UTF-32")])
def test_a_manifest_in_utf16_or_utf32_is_named_so(tmp_path, libri, encoding, name):
    """Windows Notepad saves "Unicode" as UTF-16: its NULs made it 'binary data: an audio file or a
    checkpoint?'."""
    path = tmp_path / "m.jsonl"
    path.write_text(_line(libri[0].audio_filepath) + "\n", encoding=encoding)
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}: {name} text: save it as UTF-8"
    path.write_text(_line(libri[0].audio_filepath) + "\n", encoding="utf-8-sig")  # a UTF-8 mark is read past
    assert [u.audio_filepath for u in read_manifest(path)] == [libri[0].audio_filepath]


def test_an_mpeg_layer1_file_given_as_manifest_is_not_called_utf16(tmp_path):
    """An MPEG Layer I frame with a checksum begins with the bytes of UTF-16's byte-order mark."""
    frame = bytes.fromhex("fffe14c0") + bytes(28)  # 32 kbit/s, 48 kHz, mono: 32 bytes of silence
    path = tmp_path / "take.mp1"
    path.write_bytes(frame * 50)
    assert sf.info(str(path)).frames == 50 * 384  # it is audio, read by libsndfile's MPEG decoder
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}: not a JSON-lines manifest (binary data: an audio file or a checkpoint?)"


def test_skip_bad_logs_each_problem_and_total(tmp_path, libri, caplog):
    lines = [_line(u.audio_filepath, u.duration, u.text) for u in libri[:5]]
    lines.insert(1, "{oops")
    lines.insert(3, _line(tmp_path / "gone.wav"))
    lines.append(_line(libri[0].audio_filepath, -2.0))
    path = _write_lines(tmp_path / "m.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="asr.manifest"):
        utts = read_manifest(path, skip_bad=True)
    assert [u.audio_filepath for u in utts] == [u.audio_filepath for u in libri[:5]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:4: audio file not found: {tmp_path}/gone.wav",
        f"{path}:8: 'duration' must be finite and >= 0, got -2.0",
        f"{path}: skipped 3 of 8 lines",
    ]
    good, problems = read_manifest_report(path)
    assert good == utts and [p.line for p in problems] == [2, 4, 8]


def test_unreadable_audio_is_named_with_its_manifest_line(tmp_path, libri, caplog):
    """A damaged file listed in a manifest: the warning gives the line to fix, as bad lines do."""
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)  # a FLAC header, then garbage
    path = _write_lines(tmp_path / "m.jsonl", ["", _line(libri[0].audio_filepath, libri[0].duration), _line(bad)])
    utts = read_manifest(path)
    assert [u.source for u in utts] == [f"{path}:2", f"{path}:3"]  # the blank line counts
    assert utts[0] == Utterance(libri[0].audio_filepath, libri[0].duration, "hi")  # where it was read is not compared
    with caplog.at_level(logging.WARNING, logger="asr.data"):
        dataset = SpeechDataset(utts, CharTokenizer(), skip_unreadable=True)
        assert isinstance(dataset[0], Example) and dataset[1] == Unreadable(1, dataset[1].message)
        ReadLog().report(collate([dataset[0], dataset[1]]))
        AudioCache(16000).preload(utts)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all(f": {path}:3: {bad}: " in m for m in messages), messages
    # made in code: the file and the cause, as before
    assert SpeechDataset([Utterance(str(bad), 1.0, "hi")], CharTokenizer(), skip_unreadable=True)[0].message.startswith(
        f"{bad}: ")


def test_each_unreadable_file_is_reported_once_by_the_process_reading_the_loader(tmp_path, libri, caplog):
    """Items read by loader workers bring their errors along in the batch, and the log warns of
    each file once: a training run warned of the same file again every epoch, from the worker
    that read it."""
    bad = [tmp_path / "bad1.flac", tmp_path / "bad2.wav"]
    bad[0].write_bytes(b"fLaC" + bytes(range(256)) * 4)
    bad[1].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense")
    path = _write_lines(tmp_path / "m.jsonl", [_line(libri[0].audio_filepath, libri[0].duration), _line(bad[0]),
                                               _line(bad[1])])
    dataset = SpeechDataset(read_manifest(path), CharTokenizer(), skip_unreadable=True)
    log = ReadLog()
    with caplog.at_level(logging.WARNING, logger="asr.data"):
        for epoch in range(2):
            loader = DataLoader(dataset, batch_sampler=[[0, 1], [2]], collate_fn=collate, num_workers=2)
            batches = list(loader)
            for batch in batches:
                log.report(batch)
            assert [b.indices.tolist() for b in batches] == [[0], []] and [b.size for b in batches] == [1, 0]
            assert [len(b.unreadable) for b in batches] == [1, 1]
            assert batches[1].waves.shape == (0, 0) and batches[1].to("cpu").unreadable == batches[1].unreadable
    unreadable = [m for b in batches for m in b.unreadable]
    assert unreadable[0].startswith(f"{path}:2: {bad[0]}: ") and unreadable[1].startswith(f"{path}:3: {bad[1]}: ")
    assert [r.getMessage() for r in caplog.records] == [f"skipped unreadable audio: {m}" for m in unreadable]


def test_an4_manifests_are_relative_to_another_root(shared_data, an4_root, caplog):
    manifest = shared_data / "an4-subset" / "asr" / "an4_train.json"
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    missing = manifest.parent / "tests/data/asr/train/an4/wav/an46-mmap-b.wav"
    assert str(err.value) == (f"{manifest}: none of the 30 audio files exist (first: {missing}); "
                              "are the paths relative to the manifest's folder?")
    with caplog.at_level(logging.WARNING, logger="asr.manifest"):
        assert read_manifest(manifest, skip_bad=True) == []
    assert caplog.records[-1].getMessage() == f"{manifest}: skipped 30 of 30 lines"
    _, problems = read_manifest_report(manifest)
    assert [p.line for p in problems] == list(range(1, 31))
    assert len(read_manifest(manifest, check_audio=False)) == 30
    # the same lines resolve from the root they were written for
    moved = an4_root / "an4_train.json"
    moved.write_bytes(manifest.read_bytes())
    utts = read_manifest(moved)
    assert len(utts) == 30 and utts[0].text == "stop"
    assert utts[0].audio_filepath == f"{an4_root}/tests/data/asr/train/an4/wav/an46-mmap-b.wav"


def test_audio_paths_that_look_wrong_are_summed_up_after_a_few(shared_data, tmp_path, libri, caplog):
    """A manifest away from its audio logged one line per utterance (hundreds) and never said why;
    a few missing files among good ones are still named one by one."""
    manifest = shared_data / "an4-subset" / "asr" / "an4_train.json"
    with caplog.at_level(logging.WARNING, logger="asr.manifest"):
        assert read_manifest(manifest, skip_bad=True) == []
    missing = [manifest.parent / "tests/data/asr/train/an4/wav" / name
               for name in ("an46-mmap-b.wav", "an298-fsaf2-b.wav", "an357-mscg2-b.wav")]
    assert [r.getMessage() for r in caplog.records] == [
        *(f"{manifest}:{i}: audio file not found: {path}" for i, path in enumerate(missing, start=1)),
        f"{manifest}: none of the 30 audio files exist (first: {missing[0]}); are the paths relative to the "
        "manifest's folder?",
        f"{manifest}: skipped 30 of 30 lines"]
    # the first 20 lines' audio missing, then some found: the same, with the count
    lines = [_line(f"wav/{i}.flac") for i in range(24)] + [_line(u.audio_filepath) for u in libri[:2]]
    path = _write_lines(tmp_path / "m.jsonl", lines)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asr.manifest"):
        assert len(read_manifest(path, skip_bad=True)) == 2
    assert [r.getMessage() for r in caplog.records][3:] == [
        f"{path}: 24 of the 26 audio files do not exist (first: {tmp_path}/wav/0.flac); are the paths relative "
        "to the manifest's folder?",
        f"{path}: skipped 24 of 26 lines"]
    # missing files among found ones are named each
    lines = [_line(u.audio_filepath) for u in libri[:19]] + [_line(f"wav/{i}.flac") for i in range(24)]
    _write_lines(path, lines)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asr.manifest"):
        assert len(read_manifest(path, skip_bad=True)) == 19
    assert len(caplog.records) == 25 and caplog.records[-2].getMessage().endswith("audio file not found: "
                                                                                  f"{tmp_path}/wav/23.flac")


def test_write_read_round_trip(tmp_path: Path, libri: list[Utterance]):
    chapter = Path(libri[0].audio_filepath).parent
    (tmp_path / "audio").symlink_to(chapter)
    inside = Utterance(str(tmp_path / "audio" / Path(libri[0].audio_filepath).name), 1.5,
                       "Don't — “quote”", 0.25, "4088")
    utts = [inside, libri[1], Utterance(libri[2].audio_filepath, 0.0, "")]
    path = tmp_path / "m.jsonl"
    write_manifest(path, utts)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"audio_filepath": f"audio/{Path(libri[0].audio_filepath).name}",
                     "duration": 1.5, "text": "Don't — “quote”", "offset": 0.25,
                     "speaker": "4088"}
    assert read_manifest(path) == utts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "m.jsonl"]


def test_write_manifest_leaves_old_file_on_failure(tmp_path: Path, libri: list[Utterance]):
    path = tmp_path / "m.jsonl"
    write_manifest(path, libri[:3])
    before = path.read_bytes()
    bad = Utterance(libri[3].audio_filepath, float("nan"), "x")
    with pytest.raises(ValueError, match=r"utterance 1 .*duration must be finite"):
        write_manifest(path, [libri[0], bad])

    def interrupted():
        yield libri[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_manifest(path, interrupted())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temp file left behind


# ---------------------------------------------------------------------------- dataset


def test_dataset_wave_length_and_tokens(libri: list[Utterance]):
    tok = CharTokenizer()
    utts = sorted(libri, key=lambda u: u.duration)[:3]
    ds = SpeechDataset(utts, tok)
    assert len(ds) == 3 and ds.durations == [u.duration for u in utts]
    for i, utt in enumerate(utts):
        ex = ds[i]
        assert ex.index == i and ex.wave.dtype == torch.float32 and ex.wave.ndim == 1
        assert abs(ex.wave.shape[0] - utt.duration * 16000) <= 1
        assert ex.tokens.dtype == torch.int64
        assert ex.tokens.tolist() == tok.encode(normalize_text(utt.text))
        assert tok.decode(ex.tokens.tolist()) == normalize_text(utt.text) == utt.text.lower()
    low = SpeechDataset(utts, tok, sample_rate=8000)[0]
    assert abs(low.wave.shape[0] - utts[0].duration * 8000) <= 1


def test_dataset_segment_with_offset(libri: list[Utterance]):
    utt = libri[0]
    full = load_audio(utt.audio_filepath, 16000)
    seg = Utterance(utt.audio_filepath, 1.5, "a segment", offset=2.0)
    ex = SpeechDataset([seg], CharTokenizer())[0]
    assert abs(ex.wave.shape[0] - 24000) <= 1
    np.testing.assert_allclose(ex.wave.numpy(), full[32000:32000 + ex.wave.shape[0]], atol=1e-6)
    (wave,) = list(iter_waves([seg]))
    np.testing.assert_array_equal(wave, ex.wave.numpy())


def test_dataset_resamples_8k_audio(shared_data: Path):
    path = shared_data / "fsdd" / "recordings" / "7_george_0.wav"
    info = sf.info(str(path))
    utt = Utterance(str(path), info.frames / info.samplerate, "7")
    ex = SpeechDataset([utt], CharTokenizer(), sample_rate=16000)[0]
    assert info.samplerate == 8000 and abs(ex.wave.shape[0] - 2 * info.frames) <= 1
    assert ex.tokens.tolist() == CharTokenizer().encode("seven")


# ------------------------------------------------------------------------------ audio cache
def test_audio_cache_serves_the_decoded_samples_after_the_files_are_gone(libri, shared_data, tmp_path, caplog):
    copies = []
    for utt in sorted(libri, key=lambda u: u.duration)[:3]:
        path = tmp_path / Path(utt.audio_filepath).name
        path.write_bytes(Path(utt.audio_filepath).read_bytes())
        copies.append(Utterance(str(path), utt.duration, utt.text))
    copies.append(Utterance(copies[0].audio_filepath, 0.5, "a segment", offset=0.25))
    digit = shared_data / "fsdd" / "recordings" / "7_george_0.wav"  # 8 kHz: resampled once, when cached
    (tmp_path / digit.name).write_bytes(digit.read_bytes())
    copies.append(Utterance(str(tmp_path / digit.name), 0.0, "7"))
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC not really")
    copies.append(Utterance(str(bad), 1.0, "bad"))
    tok = CharTokenizer()
    expected = [SpeechDataset(copies, tok, skip_unreadable=True)[i] for i in range(len(copies))]
    assert isinstance(expected[-1], Unreadable)

    cache = AudioCache(16000)
    with caplog.at_level(logging.WARNING, logger="asr.data"):
        held_s = cache.preload(copies + copies[:1], threads=2)  # a repeat is decoded once
    assert len(cache) == 5 and "not cached, unreadable audio" in caplog.text and str(bad) in caplog.text
    assert held_s == pytest.approx(sum(len(e.wave) for e in expected[:5]) / 16000)
    assert cache.nbytes == 4 * sum(len(e.wave) for e in expected[:5])
    for utt in copies[:-1]:
        Path(utt.audio_filepath).unlink(missing_ok=True)
    ds = SpeechDataset(copies, tok, skip_unreadable=True, cache=cache)
    for i, want in enumerate(expected[:5]):
        got = ds[i]
        assert torch.equal(got.wave, want.wave) and torch.equal(got.tokens, want.tokens)
        got.wave.zero_()  # a consumer writing into its copy leaves the cache as it was
        assert torch.equal(ds[i].wave, want.wave)
    assert isinstance(ds[5], Unreadable)  # not cached: read again at access, and skipped as before
    with pytest.raises(AudioError, match="bad.flac"):
        SpeechDataset(copies, tok, cache=cache)[5]
    loader = DataLoader(ds, batch_sampler=[[0, 3], [1, 2, 4]], collate_fn=collate, num_workers=2,
                        multiprocessing_context="fork")
    assert [b.indices.tolist() for b in loader] == [[0, 3], [1, 2, 4]]  # forked workers read the cache
    with pytest.raises(ValueError, match="cache holds 16000 Hz audio, the dataset reads 8000 Hz"):
        SpeechDataset(copies, tok, sample_rate=8000, cache=cache)


# ---------------------------------------------------------------------------- sampler


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize("kwargs", [{}, {"max_batch_size": 4}, {"jitter_s": 0.5}])
def test_sampler_covers_every_index_once_within_cap(durations, kwargs):
    d = np.asarray(durations)
    sampler = DurationBatchSampler(durations, max_batch_s=60.0, seed=3, **kwargs)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(_flat(batches)) == list(range(len(durations)))
        for b in batches:
            assert len(b) * d[b].max() <= 60.0
            assert len(b) <= kwargs.get("max_batch_size", len(d))


def test_sampler_sortagrad_epoch0_shortest_first(durations):
    sampler = DurationBatchSampler(durations, max_batch_s=45.0, seed=1)
    d = np.asarray(durations)
    batches = list(sampler)
    assert np.all(np.diff(d[_flat(batches)]) >= 0)
    sampler.set_epoch(1)
    later = d[_flat(list(sampler))]
    assert not np.all(np.diff(later) >= 0)  # shuffled after epoch 0
    unshuffled = DurationBatchSampler(durations, max_batch_s=45.0, shuffle=False)
    unshuffled.set_epoch(5)
    assert list(unshuffled) == batches
    no_sortagrad = DurationBatchSampler(durations, max_batch_s=45.0, seed=1, sortagrad=False)
    assert list(no_sortagrad) != batches


def test_sampler_deterministic_in_seed_and_epoch(durations):
    def epoch_batches(seed, epoch, **kw):
        s = DurationBatchSampler(durations, max_batch_s=60.0, seed=seed, **kw)
        s.set_epoch(epoch)
        return list(s)

    assert epoch_batches(7, 1) == epoch_batches(7, 1)
    assert epoch_batches(7, 1, jitter_s=1.0) == epoch_batches(7, 1, jitter_s=1.0)
    assert epoch_batches(7, 1) != epoch_batches(7, 2)
    assert epoch_batches(7, 1) != epoch_batches(8, 1)
    assert sorted(map(sorted, epoch_batches(7, 1, jitter_s=2.0))) != sorted(epoch_batches(7, 1))


def test_sampler_overlong_utterance_alone_and_warned_of(caplog):
    """An utterance longer than a batch forms a batch of its own; warn_long_utterances, which the
    commands call once a set, names it by its manifest line (the sampler named an index)."""
    durations = [1.0, 2.0, 30.0, 3.0, 2.5]
    sampler = DurationBatchSampler(durations, max_batch_s=10.0)
    assert list(sampler) == [[0, 1, 4], [3], [2]]
    utts = [Utterance(f"/a/{i}.wav", d, "x", source=f"dev.jsonl:{i + 1}") for i, d in enumerate(durations)]
    with caplog.at_level(logging.WARNING, logger="asr.data"):
        warn_long_utterances(utts, 10.0, "--batch-s")
        warn_long_utterances(utts, 30.0, "--batch-s")  # none longer: nothing said
    assert caplog.messages == ["1 of 5 utterances are longer than --batch-s 10 s and form batches of their own, "
                               "larger than that; the longest: dev.jsonl:3: /a/2.wav (30.00 s)"]


def test_sampler_resume_mid_epoch(durations):
    def make():
        return DurationBatchSampler(durations, max_batch_s=40.0, seed=5, jitter_s=0.3)

    full = make()
    full.set_epoch(2)
    expected = list(full)
    first = make()
    first.set_epoch(2)
    it = iter(first)
    done = [next(it) for _ in range(7)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_done": 7, "num_utterances": len(durations)}
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    resumed.set_epoch(2)  # a trainer re-entering the same epoch keeps the position
    assert done + list(resumed) == expected
    resumed.set_epoch(3)
    full.set_epoch(3)
    assert list(resumed) == list(full)
    with pytest.raises(ValueError, match="for 496 utterances, this sampler has 3"):
        DurationBatchSampler([1.0, 2.0, 3.0], 10.0).load_state_dict(state)


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_batch_s must be positive"):
        DurationBatchSampler([1.0], max_batch_s=0)
    with pytest.raises(ValueError, match="durations"):
        DurationBatchSampler([1.0, float("nan")], max_batch_s=10)
    with pytest.raises(ValueError, match="max_batch_size"):
        DurationBatchSampler([1.0], max_batch_s=10, max_batch_size=0)


# ---------------------------------------------------------------------------- collate, loader


def test_collate_pads_with_zeros(libri: list[Utterance]):
    ds = SpeechDataset(sorted(libri, key=lambda u: u.duration)[:3], CharTokenizer())
    examples = [ds[2], ds[0], ds[1]]
    batch = collate(examples)
    S, L = max(e.wave.shape[0] for e in examples), max(e.tokens.shape[0] for e in examples)
    assert batch.waves.shape == (3, S) and batch.waves.dtype == torch.float32
    assert batch.tokens.shape == (3, L) and batch.tokens.dtype == torch.int64
    assert batch.indices.tolist() == [2, 0, 1]
    for b, e in enumerate(examples):
        n, m = e.wave.shape[0], e.tokens.shape[0]
        assert (batch.wave_lens[b], batch.token_lens[b]) == (n, m)
        assert torch.equal(batch.waves[b, :n], e.wave) and not batch.waves[b, n:].any()
        assert torch.equal(batch.tokens[b, :m], e.tokens) and not batch.tokens[b, m:].any()
    for t in (batch.wave_lens, batch.token_lens, batch.indices):
        assert t.dtype == torch.int64 and t.shape == (3,)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.waves, batch.waves)
    with pytest.raises(ValueError, match="no examples"):
        collate([])


def test_dataloader_over_an4(shared_data: Path, an4_root: Path):
    moved = an4_root / "an4_val.json"
    moved.write_bytes((shared_data / "an4-subset" / "asr" / "an4_val.json").read_bytes())
    utts = read_manifest(moved)
    ds = SpeechDataset(utts, CharTokenizer())
    sampler = DurationBatchSampler(ds.durations, max_batch_s=12.0, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=0)
    seen = []
    for batch in loader:
        assert isinstance(batch, Batch) and batch.waves.shape[0] == batch.tokens.shape[0]
        assert int(batch.wave_lens.max()) == batch.waves.shape[1]
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(len(utts))) == list(range(10))


def test_first_entry_tells_a_manifest_from_other_files(tmp_path: Path):
    from asr.manifest import first_entry

    cases = {"empty": (b"", {}), "manifest": (b'{"audio_filepath": "a.wav"}\n{"x": 1}\n', {"audio_filepath": "a.wav"}),
             "text": (b"hello world\n", None), "list": (b"[1, 2]\n", None), "blank then text": (b"\nmine\n", None)}
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert first_entry(tmp_path / name) == expected, name

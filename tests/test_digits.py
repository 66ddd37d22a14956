"""FSDD preparation on a 60-file copy of the real recordings: splits, 16 kHz output, skipping work."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import soundfile as sf

from asr.datasets.digits import DIGIT_WORDS, find_recordings, prepare_digits
from asr.datasets.download import DownloadError, TargetError
from asr.manifest import read_manifest
from asr.outputs import OutputError

REPO = Path(__file__).resolve().parents[1]
SPEAKERS = ("jackson", "theo")
TAKES = (4, 5, 10)  # take 4 is the last test take of the official split; 10 checks numeric order


@pytest.fixture(scope="module")
def recordings(shared_data: Path, tmp_path_factory) -> Path:
    """2 speakers x 10 digits x 3 takes = 60 real 8 kHz recordings, copied into a temporary folder."""
    src = shared_data / "fsdd" / "recordings"
    dst = tmp_path_factory.mktemp("fsdd") / "recordings"
    dst.mkdir()
    for speaker in SPEAKERS:
        for digit in range(10):
            for take in TAKES:
                name = f"{digit}_{speaker}_{take}.wav"
                shutil.copy2(src / name, dst / name)
    (dst / "README.txt").write_text("not a recording")
    (dst / "notes.wav").write_bytes(b"")  # does not match {digit}_{speaker}_{index}.wav: ignored
    return dst


@pytest.fixture(scope="module")
def official(recordings: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    return out, prepare_digits(recordings, out, split="official")


def test_official_split_counts(official):
    out, split = official
    assert (split.num_train, split.num_test, split.skipped) == (40, 20, 0)
    assert split.train == out / "train.jsonl" and split.test == out / "test.jsonl"
    test = read_manifest(split.test)
    train = read_manifest(split.train)
    assert len(test) == 20 and len(train) == 40
    assert {Path(u.audio_filepath).stem.split("_")[2] for u in test} == {"4"}
    assert {Path(u.audio_filepath).stem.split("_")[2] for u in train} == {"5", "10"}
    assert {u.speaker for u in train} == set(SPEAKERS)


def test_texts_are_digit_words(official):
    _, split = official
    for utt in read_manifest(split.train) + read_manifest(split.test):
        digit, speaker, _ = Path(utt.audio_filepath).stem.split("_")
        assert utt.text == DIGIT_WORDS[int(digit)]
        assert utt.speaker == speaker
    assert DIGIT_WORDS[7] == "seven"
    assert split.words.read_text().split("\n") == list(DIGIT_WORDS) + [""]


def test_recipe_end_to_end_with_greedy_and_lexicon_scores(recordings, tmp_path):
    """recipes/digits/run.sh (all three stages) on the 60 recordings, with the tiny preset for 1 epoch."""
    work = tmp_path / "checkout"
    (work / "recipes").mkdir(parents=True)
    shutil.copytree(REPO / "recipes" / "digits", work / "recipes" / "digits")
    shutil.copy(REPO / "recipes" / "common.sh", work / "recipes" / "common.sh")
    cmd = ["bash", str(work / "recipes/digits/run.sh"), "--data-dir", str(recordings.parent),
           "preset=tiny", "epochs=1", "threads=1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    exp = work / "exp" / "digits"
    assert (exp / "model.pt").is_file() and (exp / "data" / "words.txt").is_file()
    greedy = (exp / "decode/test/wer.txt").read_text()
    lexicon = (exp / "decode/test-lexicon/wer.txt").read_text()
    assert "/ 20," in greedy.splitlines()[0] and "/ 20," in lexicon.splitlines()[0]  # 20 test utterances
    hyps = [line.split("\t", 1)[1] if "\t" in line else "" for line in
            (exp / "decode/test-lexicon/hyps.txt").read_text().splitlines()]
    # only the ten words (this 1-epoch model may repeat one: the lexicon restricts words, not their count)
    assert len(hyps) == 20 and {w for h in hyps for w in h.split()} <= set(DIGIT_WORDS)
    assert "training wall time" in run.stdout and "lexicon of the ten digit words" in run.stdout


def test_recipe_streaming_conf_streams_the_test_set(recordings, tmp_path):
    """run.sh --conf small_stream: a forward-only model in exp/digits-small_stream whose streamed
    test transcripts stage 2 checks against the whole-file ones."""
    work = tmp_path / "checkout"
    (work / "recipes").mkdir(parents=True)
    shutil.copytree(REPO / "recipes" / "digits", work / "recipes" / "digits")
    shutil.copy(REPO / "recipes" / "common.sh", work / "recipes" / "common.sh")
    cmd = ["bash", str(work / "recipes/digits/run.sh"), "--data-dir", str(recordings.parent), "--conf", "small_stream",
           "preset=tiny", "epochs=1", "threads=1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    exp = work / "exp" / "digits-small_stream"
    assert "bidirectional: false" in (exp / "config.yaml").read_text()
    assert "streamed transcripts = whole-file transcripts (20 files)" in run.stdout
    streamed = (exp / "decode" / "stream.txt").read_text().splitlines()
    assert len(streamed) == 20 and streamed == (exp / "decode" / "transcribe.txt").read_text().splitlines()
    missing = subprocess.run(["bash", str(work / "recipes/digits/run.sh"), "--conf", "nope"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no recipes/digits/conf/nope.yaml" in missing.stderr


def test_recipe_relative_data_dir_is_the_callers(recordings, tmp_path):
    """run.sh works from the repository root; a relative --data-dir was looked up there, not in
    the folder the user ran it from ('no FSDD recordings found')."""
    work = tmp_path / "checkout"
    (work / "recipes").mkdir(parents=True)
    shutil.copytree(REPO / "recipes" / "digits", work / "recipes" / "digits")
    shutil.copy(REPO / "recipes" / "common.sh", work / "recipes" / "common.sh")
    caller = tmp_path / "home"
    shutil.copytree(recordings.parent, caller / "my-fsdd")
    run = subprocess.run(["bash", str(work / "recipes/digits/run.sh"), "--data-dir", "my-fsdd", "--stop-stage", "0"],
                         capture_output=True, text=True, timeout=300, cwd=caller)
    assert run.returncode == 0, run.stderr
    train = read_manifest(work / "exp" / "digits" / "data" / "train.jsonl")
    assert len(train) == 40 and Path(train[0].audio_filepath).is_relative_to(work / "exp" / "digits" / "data" / "wav")
    again = subprocess.run(["bash", str(work / "recipes/digits/run.sh"), "--data-dir", str(caller / "my-fsdd"),
                            "--stop-stage", "0"], capture_output=True, text=True, timeout=60, cwd=work)
    assert again.returncode == 0 and "already prepared" in again.stdout, again.stderr
    # another copy of FSDD: stage 0 does not go on with the manifests of the first one
    shutil.copytree(recordings.parent, caller / "other-fsdd")
    other = subprocess.run(["bash", str(work / "recipes/digits/run.sh"), "--data-dir", "other-fsdd", "--stop-stage", "0"],
                           capture_output=True, text=True, timeout=60, cwd=caller)
    assert other.returncode == 2 and len(other.stderr.splitlines()) == 1, other.stderr
    assert f"prepared from {(caller / 'my-fsdd').resolve()}, not {(caller / 'other-fsdd').resolve()}" in other.stderr


PATH_OPTIONS = {"digits": ["--data-dir"], "librispeech": ["--data-dir", "--manifest-dir", "--exp"],
                "mini_librispeech": ["--data-dir", "--dev-dir", "--exp", "--lm"],
                "wsj": ["--wsj0", "--wsj1", "--data", "--exp"]}


@pytest.mark.parametrize("recipe", ["digits", "librispeech", "mini_librispeech", "wsj"])
def test_recipe_arguments_are_checked_before_any_stage(recipe, tmp_path):
    """A stage that is not a number, a missing value, a stage range with nothing in it, an unknown
    option, --option=value, a --data-dir or --conf that is not there, an empty path: one line and status 2 before
    any stage (they used to run nothing and exit 0, die on bash's 'unbound variable', or fail at
    the stage that reads them); --help prints the usage."""
    script = str(REPO / "recipes" / recipe / "run.sh")

    def run(*args):
        return subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    for args, message in ((["--stage", "x"], "run.sh: --stage 'x': expected a whole number"),
                          (["--stop-stage"], "run.sh: --stop-stage needs a value"),
                          (["--stage", "9"], "run.sh: --stage 9 --stop-stage "),
                          (["--stage", "1", "--nope"], "run.sh: unknown option --nope (--help lists them)\n"),  # was 'needs a value'
                          (["--stage=1"], "run.sh: --stage=1: give the value as a separate word (--stage 1)\n")):
        result = run(*args)
        assert result.returncode == 2 and result.stdout == "" and result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
    first, last = {"digits": (0, 2), "librispeech": (1, 6), "mini_librispeech": (1, 7), "wsj": (1, 6)}[recipe]
    for args in (["--stage", "9"], ["--stage", "0", "--stop-stage", "0"] if first else ["--stage", "3"]):
        result = run(*args)  # was "the stages are 0 to N" for all, and --stop-stage 0 ran nothing with status 0
        assert result.returncode == 2 and result.stderr.endswith(f": no stage to run (the stages are {first} to {last})\n")
    usage = run("--help")
    assert usage.returncode == 0 and f"bash recipes/{recipe}/run.sh" in usage.stdout and "#" not in usage.stdout[:2]
    comments = Path(script).read_text().split("\nset -euo pipefail")[0].splitlines()[1:]
    assert usage.stdout.splitlines() == [line[2:] for line in comments]  # the last line too (it was left out)
    if recipe == "digits":
        result = run("--split", "bogus")
        assert result.returncode == 2 and "--split 'bogus': expected official or speaker" in result.stderr
    if recipe in ("digits", "librispeech", "mini_librispeech"):  # before any stage, not at the stage that reads it
        result = run("--data-dir", "nope")
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"run.sh: --data-dir {tmp_path / 'nope'}: no such folder\n"
        (tmp_path / "a-file").write_text("")
        result = run("--data-dir", "a-file")
        assert (result.returncode, result.stderr) == (2, f"run.sh: --data-dir {tmp_path / 'a-file'}: not a folder\n")
    for option in PATH_OPTIONS[recipe]:  # an unset shell variable: --data-dir "" meant "download"
        result = run(option, "")
        assert (result.returncode, result.stdout) == (2, ""), (option, result.stderr)
        assert result.stderr == f"run.sh: {option}: an empty path (leave the option out for its default)\n"
    if recipe in ("mini_librispeech", "wsj"):  # was refused by `asr train`, after the stages before it had run
        result = run("--conf", "nope", "--stage", "3")
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"run.sh: --conf nope: no recipes/{recipe}/conf/nope.yaml\n"
        assert not (REPO / "exp" / f"{recipe}-nope").exists()  # its exp/<name>/log was made first


def test_output_is_16k_with_twice_the_samples(official, recordings):
    out, split = official
    utts = read_manifest(split.train) + read_manifest(split.test)
    assert len(list((out / "wav").glob("*.wav"))) == 60
    assert not list((out / "wav").glob("*.tmp*"))
    for utt in utts:
        info = sf.info(utt.audio_filepath)
        original = sf.info(recordings / Path(utt.audio_filepath).name)
        assert original.samplerate == 8000
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert info.frames == 2 * original.frames
        assert utt.duration == pytest.approx(original.frames / 8000, abs=1e-9)
        assert Path(utt.audio_filepath).parent == (out / "wav").resolve()


def test_rerun_skips_work_already_done(official, recordings, tmp_path):
    shutil.copytree(official[0], tmp_path, dirs_exist_ok=True)  # a finished run, moved
    first = prepare_digits(recordings, tmp_path)
    wavs = sorted((tmp_path / "wav").glob("*.wav"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in wavs}
    removed = wavs[0]
    removed.unlink()
    second = prepare_digits(recordings, tmp_path)
    assert second == first
    for p in sorted((tmp_path / "wav").glob("*.wav")):
        if p.name != removed.name:
            assert p.stat().st_mtime_ns == mtimes[p.name], p  # not written again
    assert removed.is_file()  # a missing output is made again
    assert read_manifest(second.train) == read_manifest(first.train)


def test_a_manifest_edited_by_hand_is_not_replaced(official, recordings, tmp_path):
    """A rerun (another split, say) rewrites the outputs it wrote; one changed since is refused
    before any work, and nothing there changes."""
    prepare_digits(recordings, tmp_path)
    assert prepare_digits(recordings, tmp_path, split="speaker").num_test == 30  # its own outputs: replaced
    train = tmp_path / "train.jsonl"
    edited = "".join(train.read_text().splitlines(keepends=True)[:5])
    train.write_text(edited)  # the user keeps five utterances
    (tmp_path / "wav" / "0_theo_4.wav").unlink()
    with pytest.raises(OutputError, match=r"train\.jsonl: exists and is not the train\.jsonl asr prepare digits wrote"):
        prepare_digits(recordings, tmp_path)
    assert train.read_text() == edited and not (tmp_path / "wav" / "0_theo_4.wav").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "words.txt").write_text("my lexicon\n")  # never written by it
    with pytest.raises(OutputError, match=r"mine/words\.txt: exists and is not the words\.txt"):
        prepare_digits(recordings, tmp_path / "mine")


def test_speaker_split(official, recordings, tmp_path):
    shutil.copytree(official[0] / "wav", tmp_path / "wav")  # the resampled audio is reused
    split = prepare_digits(recordings, tmp_path, split="speaker", test_speaker="theo")
    assert (split.num_train, split.num_test) == (30, 30)
    assert {u.speaker for u in read_manifest(split.test)} == {"theo"}
    assert {u.speaker for u in read_manifest(split.train)} == {"jackson"}


def test_unknown_test_speaker_and_split(recordings, tmp_path):
    with pytest.raises(ValueError, match=r"test speaker 'alice' not in .*recordings \(speakers: jackson, theo\)"):
        prepare_digits(recordings, tmp_path, split="speaker", test_speaker="alice")
    with pytest.raises(ValueError, match=r"split 'random' is not 'official' or 'speaker'"):
        prepare_digits(recordings, tmp_path, split="random")


def test_asr_prepare_with_an_unknown_test_speaker_is_one_line_error(shared_data, tmp_path, capsys):
    from asr.cli import main

    out = tmp_path / "digits"
    argv = ["prepare", "digits", "--data-dir", str(shared_data / "fsdd"), "--out", str(out), "--split", "speaker",
            "--test-speaker", "nobody"]
    assert main(argv) == 2  # a ValueError traceback once
    err = capsys.readouterr().err
    assert err.startswith(f"asr: error: test speaker 'nobody' not in {shared_data / 'fsdd' / 'recordings'} "
                          "(speakers: george, jackson, lucas, nicolas, theo, yweweler)") and err.count("\n") == 1
    assert not out.exists()  # refused before anything is written


def test_unreadable_recordings_skipped_and_counted(recordings, tmp_path, caplog):
    src = tmp_path / "recordings"
    src.mkdir()
    for name in ("1_theo_5.wav", "2_theo_4.wav"):
        shutil.copy2(recordings / name, src / name)
    (src / "3_theo_5.wav").write_bytes(b"")  # zero bytes
    (src / "4_theo_5.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage-garbage-garbage")  # corrupt header
    good = (recordings / "5_theo_5.wav").read_bytes()
    (src / "5_theo_5.wav").write_bytes(good[: len(good) // 2])  # truncated data
    for name in ("6_Theo_5.wav", "7_theo_5 (1).wav", "8_theo_5.WAV"):  # renamed or copied by hand: were left
        shutil.copy2(recordings / "1_theo_5.wav", src / name)  # out without a word
    with caplog.at_level(logging.WARNING, logger="asr.datasets.digits"):
        split = prepare_digits(src, tmp_path / "out")
    assert (split.num_train, split.num_test, split.skipped) == (1, 1, 3)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (f"{src}: 3 .wav files named like recordings are left out: they do not fit "
                           "{digit}_{speaker}_{index}.wav (speaker in lower case), e.g. 6_Theo_5.wav")
    for name in ("3_theo_5.wav", "4_theo_5.wav", "5_theo_5.wav"):
        assert any(name in m for m in messages), (name, messages)
    assert any("skipped 3 unreadable recordings of 5" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "out" / "wav").iterdir()) == ["1_theo_5.wav", "2_theo_4.wav"]


def test_find_recordings(recordings, tmp_path):
    assert find_recordings(recordings.parent) == recordings
    assert find_recordings(recordings) == recordings
    empty = tmp_path / "empty"
    (empty / "recordings").mkdir(parents=True)
    (empty / "recordings" / "hello.wav").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=rf"{empty}: no FSDD recordings"):
        find_recordings(empty)
    with pytest.raises(FileNotFoundError, match="does-not-exist: no FSDD recordings"):
        find_recordings(tmp_path / "does-not-exist")
    # without data_dir, an earlier download under download_dir is used (no network)
    downloaded = tmp_path / "dl" / "free-spoken-digit-dataset-1.0.10" / "recordings"
    downloaded.mkdir(parents=True)
    (tmp_path / "dl" / ".complete").write_text("extracted\n")
    assert find_recordings(None, download_dir=tmp_path / "dl", url="http://127.0.0.1:9/unused") == downloaded


def _fsdd_archive(recordings: Path) -> bytes:
    """A tar.gz laid out like FSDD's GitHub archive, holding the 60 test recordings."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(recordings.glob("*_*_*.wav")):
            tar.add(path, f"free-spoken-digit-dataset-1.0.10/recordings/{path.name}")
    return buf.getvalue()


def test_fsdd_download_damaged_or_half_extracted_is_fetched_again(recordings, http_server, tmp_path):
    """A damaged archive (no checksum is published) used to stay and fail on every run; a download
    whose extraction stopped half-way used to count as done, with the files it had."""
    good = _fsdd_archive(recordings)
    dl, url = tmp_path / "dl", f"{http_server.url}/fsdd.tar.gz"
    http_server.files["/fsdd.tar.gz"] = good[:-4000] + bytes(4000)  # same size, the tail zeroed
    with pytest.raises(DownloadError, match=r"fsdd-v1\.0\.10\.tar\.gz: not a readable tar archive .*"
                                            r"the archive was removed: run again"):
        find_recordings(None, download_dir=dl, url=url)
    assert not (dl / "fsdd-v1.0.10.tar.gz").exists() and not (dl / ".complete").exists()
    http_server.files["/fsdd.tar.gz"] = good
    found = find_recordings(None, download_dir=dl, url=url)
    assert sorted(p.name for p in found.glob("*.wav")) == sorted(p.name for p in recordings.glob("*_*_*.wav"))
    assert (dl / ".complete").is_file() and len(http_server.log) == 2

    # an extraction cut short: a few files, marked .partial (written before the first); the archive
    # kept is extracted again
    assert not (dl / ".partial").exists()
    (dl / ".complete").rename(dl / ".partial")
    for path in sorted(found.glob("*.wav"))[5:]:
        path.unlink()
    assert len(list(find_recordings(None, download_dir=dl, url=url).glob("*.wav"))) == 60
    assert len(http_server.log) == 2  # the archive on disk was used, not fetched again
    assert (dl / ".complete").is_file() and not (dl / ".partial").exists()


def test_fsdd_download_folder_of_the_users_is_refused_before_the_download(recordings, http_server, tmp_path):
    """A download folder holding the user's own files (here an FSDD copy they edited) and neither
    marker was extracted over, replacing their files of the archive's names; now it is refused
    before anything is fetched, and left as it is."""
    http_server.files["/fsdd.tar.gz"] = _fsdd_archive(recordings)
    dl, url = tmp_path / "dl", f"{http_server.url}/fsdd.tar.gz"
    mine = dl / "free-spoken-digit-dataset-1.0.10" / "recordings" / "0_theo_0.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own recording")
    with pytest.raises(DownloadError, match=rf"^{dl}: holds files that were not extracted by asr \(e\.g\. "
                                            r"free-spoken-digit-dataset-1\.0\.10; no \.partial or \.complete marker\); "
                                            r"not extracted over: move them away, or give the FSDD folder with "
                                            r"--data-dir$"):
        find_recordings(None, download_dir=dl, url=url)
    assert http_server.log == [] and mine.read_bytes() == b"my own recording"
    assert sorted(p.name for p in dl.iterdir()) == ["free-spoken-digit-dataset-1.0.10"]
    mine.parent.parent.rename(tmp_path / "mine")
    assert len(list(find_recordings(None, download_dir=dl, url=url).glob("*.wav"))) == 60


def test_a_preparation_stopped_before_its_summary_is_finished_by_a_rerun(official, recordings, tmp_path, capsys):
    """Stopped after its outputs and before digits.summary.json (here a folder stands there), the
    rerun refused train.jsonl as not written by asr prepare digits, for the user to remove by
    hand; it keeps the files, which hold what it makes, and writes the summary. A file changed
    since is still refused, with nothing written."""
    from asr.cli import main

    out = tmp_path / "out"
    args = ["prepare", "digits", "--data-dir", str(recordings.parent), "--out", str(out)]
    (out / "digits.summary.json").mkdir(parents=True)
    assert main(args) == 2
    assert capsys.readouterr().err == f"asr: error: {out / 'digits.summary.json'}: Is a directory\n"
    outputs = ("train.jsonl", "test.jsonl", "words.txt")
    left = {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in outputs}
    assert len(left["train.jsonl"][0].splitlines()) == 40 and len(list((out / "wav").glob("*.wav"))) == 60
    (out / "digits.summary.json").rmdir()
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"train 40 utterances -> {out / 'train.jsonl'}"
    for name in outputs:  # kept as they were, and what a run that is not stopped writes
        assert ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) == left[name]
        assert (out / name).read_bytes() == (official[0] / name).read_bytes()
    assert (out / "digits.summary.json").read_bytes() == (official[0] / "digits.summary.json").read_bytes()
    assert main(args + ["--split", "speaker"]) == 0  # its own outputs now: replaced
    assert len(read_manifest(out / "test.jsonl")) == 30

    # stopped again; then the user edits train.jsonl: refused before any work, nothing written
    (out / "digits.summary.json").unlink()
    train = out / "train.jsonl"
    edited = "".join(train.read_text().splitlines(keepends=True)[1:])
    train.write_text(edited)
    (out / "wav" / "0_theo_4.wav").unlink()
    assert main(args + ["--split", "speaker"]) == 2
    assert capsys.readouterr().err == (
        f"asr: error: {train}: exists and is not the train.jsonl asr prepare digits wrote or makes now (it was changed "
        "since, or not written by it); not overwritten (remove it or choose another path)\n")
    assert train.read_text() == edited and not (out / "digits.summary.json").exists()
    assert not (out / "wav" / "0_theo_4.wav").exists()


def test_a_manifest_of_a_run_stopped_over_a_finished_one_is_kept_or_replaced(official, recordings, tmp_path):
    """A speaker-split run over a finished official one, stopped after train.jsonl: that file is
    not the one the summary records, but holds what the speaker split makes, so the rerun keeps
    it; a rerun with the official split instead replaces it (it was refused, for the user to
    remove by hand a file that holds nothing of theirs). Changed by one line, it is refused."""
    speaker = tmp_path / "speaker"
    shutil.copytree(official[0] / "wav", speaker / "wav")
    prepare_digits(recordings, speaker, split="speaker", test_speaker="jackson")
    for split, made in (("speaker", speaker), ("official", official[0])):
        out = tmp_path / f"rerun-{split}"
        shutil.copytree(official[0], out)
        shutil.copy(speaker / "train.jsonl", out / "train.jsonl")  # what the stopped run wrote
        prepare_digits(recordings, out, split=split, test_speaker="jackson")
        for name in ("train.jsonl", "test.jsonl", "words.txt", "digits.summary.json"):
            assert (out / name).read_bytes() == (made / name).read_bytes(), (split, name)

    out = tmp_path / "edited"
    shutil.copytree(official[0], out)
    edited = "".join((speaker / "train.jsonl").read_text().splitlines(keepends=True)[1:])
    (out / "train.jsonl").write_text(edited)
    with pytest.raises(OutputError, match=r"train\.jsonl: exists and is not the train\.jsonl"):
        prepare_digits(recordings, out)
    assert (out / "train.jsonl").read_text() == edited


def test_fsdd_download_with_a_file_in_the_way_keeps_the_archive(recordings, http_server, tmp_path):
    """A file where the archive makes its folder is the download folder's fault, not the
    archive's: it is not removed for a download again, and the run after the file is moved
    extracts it. (In a folder an extraction of ours began, marked .partial: in any other, files
    not ours are refused before the download.)"""
    http_server.files["/fsdd.tar.gz"] = _fsdd_archive(recordings)
    dl, url = tmp_path / "dl", f"{http_server.url}/fsdd.tar.gz"
    dl.mkdir()
    (dl / ".partial").write_text("an interrupted extraction\n")
    (dl / "free-spoken-digit-dataset-1.0.10").write_text("mine\n")
    with pytest.raises(TargetError, match=r"fsdd-v1\.0\.10\.tar\.gz: member 'free-spoken-digit-dataset-1\.0\.10/"
                                          r"recordings/0_jackson_10\.wav' needs a folder at .*dl/free-spoken-digit-"
                                          r"dataset-1\.0\.10, where a file is already in the target"):
        find_recordings(None, download_dir=dl, url=url)
    assert sorted(p.name for p in dl.iterdir()) == [".partial", "free-spoken-digit-dataset-1.0.10", "fsdd-v1.0.10.tar.gz"]
    (dl / "free-spoken-digit-dataset-1.0.10").unlink()
    assert len(list(find_recordings(None, download_dir=dl, url=url).glob("*.wav"))) == 60
    assert len(http_server.log) == 1

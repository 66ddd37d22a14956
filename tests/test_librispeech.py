"""LibriSpeech-layout manifests: exact counts and durations on real audio, broken trees reported."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf

from asr.cli import main
from asr.datasets.librispeech import find_splits, prepare_librispeech, prepare_split, read_split
from asr.manifest import read_manifest
from asr.text import normalize_text

REPO = Path(__file__).resolve().parents[1]
# (speaker, chapter, utterances kept): 3 + 4 real utterances of two speakers
PICKS = (("4088", "158079", 3), ("5652", "39938", 4))


def _dev4(shared_data: Path) -> Path:
    return shared_data / "LibriSpeech" / "dev-4spk"


def _lines(shared_data: Path, speaker: str, chapter: str) -> list[str]:
    path = _dev4(shared_data) / speaker / chapter / f"{speaker}-{chapter}.trans.txt"
    return path.read_text().splitlines()


def build_tree(shared_data: Path, split_dir: Path, picks=PICKS) -> dict[str, tuple[str, float]]:
    """Copy the first utterances of each chapter into ``split_dir`` in LibriSpeech layout;
    returns ``{uid: (text, duration_s)}`` computed here from the transcript and sf.info."""
    expected = {}
    for speaker, chapter, n in picks:
        folder = split_dir / speaker / chapter
        folder.mkdir(parents=True)
        keep = _lines(shared_data, speaker, chapter)[:n]
        for line in keep:
            uid, text = line.split(" ", 1)
            src = _dev4(shared_data) / speaker / chapter / f"{uid}.flac"
            shutil.copy(src, folder / f"{uid}.flac")
            info = sf.info(src)
            expected[uid] = (text, info.frames / info.samplerate)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(keep) + "\n")
    return expected


@pytest.fixture
def tree(shared_data, tmp_path) -> tuple[Path, dict[str, tuple[str, float]]]:
    split = tmp_path / "LibriSpeech" / "tiny"
    return split, build_tree(shared_data, split)


# ------------------------------------------------------------------------------- exact manifests
def test_whole_dev_4spk_in_place(shared_data, tmp_path):
    """The real 496-utterance tree: every utterance, every word, header durations to the sample."""
    src = _dev4(shared_data)
    reports = prepare_librispeech(src, tmp_path)
    assert [r.name for r in reports] == ["dev-4spk"]
    r = reports[0]
    trans = sorted(src.glob("*/*/*.trans.txt"))
    lines = [line for t in trans for line in t.read_text().splitlines() if line.strip()]
    assert r.num_utterances == len(lines) == 496
    assert r.num_words == sum(len(line.split()) - 1 for line in lines) == 16600
    assert r.num_skipped == 0 and r.problems == []
    durations = {p.stem: sf.info(p).frames / sf.info(p).samplerate for p in src.glob("*/*/*.flac")}
    assert r.duration_s == pytest.approx(sum(durations.values()), abs=1e-6)
    assert r.duration_s / 3600 == pytest.approx(1.675, abs=5e-4)  # as data/README.md says
    utts = read_manifest(r.manifest)
    assert [Path(u.audio_filepath).stem for u in utts] == sorted(
        durations, key=lambda uid: tuple(int(x) for x in uid.split("-")))
    texts = dict(line.split(" ", 1) for line in lines)
    for u in utts:
        uid = Path(u.audio_filepath).stem
        assert u.text == texts[uid] and u.speaker == uid.split("-")[0]
        assert u.duration == pytest.approx(durations[uid], abs=1e-9)
    assert (tmp_path / "dev-4spk.problems.txt").read_text() == ""


def test_small_tree_exact_manifest(tree, tmp_path):
    split, expected = tree
    report = prepare_split(split, tmp_path / "out")
    assert (report.name, report.num_utterances, report.num_skipped) == ("tiny", 7, 0)
    assert report.num_words == sum(len(text.split()) for text, _ in expected.values())
    assert report.duration_s == pytest.approx(sum(d for _, d in expected.values()), abs=1e-9)
    lines = (tmp_path / "out" / "tiny.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [Path(e["audio_filepath"]).stem for e in entries] == [
        "4088-158079-0000", "4088-158079-0001", "4088-158079-0002",
        "5652-39938-0000", "5652-39938-0001", "5652-39938-0002", "5652-39938-0003"]
    for e in entries:
        uid = Path(e["audio_filepath"]).stem
        assert set(e) == {"audio_filepath", "duration", "text", "speaker"}
        assert Path(e["audio_filepath"]) == (split / uid.split("-")[0] / uid.split("-")[1] / f"{uid}.flac").resolve()
        assert (e["text"], e["duration"]) == (expected[uid][0], pytest.approx(expected[uid][1], abs=1e-9))
    summary = json.loads((tmp_path / "out" / "tiny.summary.json").read_text())
    assert summary["num_utterances"] == 7 and summary["num_words"] == report.num_words


def test_prepared_split_is_not_prepared_again(tree, tmp_path):
    split, _ = tree
    first = prepare_split(split, tmp_path / "out")
    manifest = tmp_path / "out" / "tiny.jsonl"
    mtime = manifest.stat().st_mtime_ns
    shutil.rmtree(split / "5652")  # would change the result if the split were read again
    again = prepare_split(split, tmp_path / "out")
    assert again.reused and manifest.stat().st_mtime_ns == mtime
    assert (again.num_utterances, again.num_words, again.duration_s) == (
        first.num_utterances, first.num_words, first.duration_s)
    forced = prepare_split(split, tmp_path / "out", force=True)
    assert not forced.reused and forced.num_utterances == 3


def test_a_manifest_asr_prepare_did_not_finish_is_not_replaced(tree, tmp_path, capsys):
    """A hand-edited manifest (no summary beside it) survives `asr prepare`; --force replaces it."""
    split, _ = tree
    out = tmp_path / "out"
    out.mkdir()
    mine = '{"audio_filepath": "my.flac", "duration": 1.0, "text": "edited by hand"}\n'
    (out / "tiny.jsonl").write_text(mine)
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"asr: error: {out / 'tiny.jsonl'}: exists without tiny.summary.json and holds other lines than "
                   "asr prepare makes of the corpus now; not overwritten (remove it, or pass --force to prepare it again)\n")
    assert (out / "tiny.jsonl").read_text() == mine and [p.name for p in out.iterdir()] == ["tiny.jsonl"]
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(out), "--force"]) == 0
    assert len(read_manifest(out / "tiny.jsonl")) == 7


def test_a_file_that_is_not_a_manifest_is_refused_before_reading(tree, tmp_path, capsys):
    """Notes of the user's at the manifest's path: refused before the split is read (it is gone)."""
    split, _ = tree
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny.jsonl").write_text("my notes\n")
    shutil.rmtree(split / "5652")
    assert main(["prepare", "librispeech", "--data-dir", str(split.parent), "--splits", "tiny", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"asr: error: {out / 'tiny.jsonl'}: exists, is not a manifest, and no tiny.summary.json beside it says asr "
        "prepare wrote it; not overwritten (remove it, or pass --force to prepare it again)\n")
    assert [p.name for p in out.iterdir()] == ["tiny.jsonl"] and (out / "tiny.jsonl").read_text() == "my notes\n"


@pytest.mark.parametrize("forced", [False, True])
def test_a_preparation_stopped_before_its_summary_is_finished_by_a_rerun(tree, tmp_path, capsys, forced):
    """Stopped between the manifest and its summary (here: the problems file cannot be written),
    the rerun finishes it by itself (it asked the user to remove the manifest). A forced run
    that stops so leaves no old summary vouching for the new manifest."""
    split, _ = tree
    out = tmp_path / "out"
    args = ["prepare", "librispeech", "--data-dir", str(split), "--out", str(out)]
    if forced:
        assert main(args) == 0
        (out / "tiny.problems.txt").unlink()
        (split / "5652" / "39938" / "5652-39938-0003.flac").unlink()  # what --force is for: the corpus changed
    (out / "tiny.problems.txt").mkdir(parents=True)
    assert main(args + ["--force"] * forced) == 2
    assert capsys.readouterr().err == f"asr: error: {out / 'tiny.problems.txt'}: Is a directory\n"
    manifest = (out / "tiny.jsonl").read_bytes()
    assert not (out / "tiny.summary.json").exists() and len(manifest.splitlines()) == 7 - forced
    (out / "tiny.problems.txt").rmdir()
    mtime = (out / "tiny.jsonl").stat().st_mtime_ns
    assert main(args) == 0
    assert "(already prepared)" not in capsys.readouterr().out
    assert (out / "tiny.jsonl").read_bytes() == manifest and (out / "tiny.jsonl").stat().st_mtime_ns == mtime
    summary = json.loads((out / "tiny.summary.json").read_text())
    assert (summary["num_utterances"], summary["num_skipped"]) == (7 - forced, forced)
    problems = (out / "tiny.problems.txt").read_text().splitlines()
    assert len(problems) == forced and sorted(p.name for p in out.iterdir()) == [
        "tiny.jsonl", "tiny.problems.txt", "tiny.summary.json"]
    again = prepare_split(split, out)
    assert again.reused and again.num_utterances == 7 - forced


@pytest.mark.parametrize("corpus", ["librispeech", "digits"])
def test_prepare_out_that_is_a_file_is_refused_before_reading(tree, tmp_path, capsys, corpus):
    """--out naming a file: one line, the file untouched, and before the corpus is read (it read
    the whole split first)."""
    split, _ = tree
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    data = split if corpus == "librispeech" else tmp_path / "no-fsdd-here"
    assert main(["prepare", corpus, "--data-dir", str(data), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"asr: error: {out}: exists and is not a folder (--out names the folder for the manifests)\n"
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize("summary", ['{"name": "tiny", "num_utt', '["tiny"]', '{"name": "tiny", "older_field": 1}'])
def test_a_summary_that_is_not_ours_is_one_line_and_keeps_the_manifest(tree, tmp_path, capsys, summary):
    """A damaged summary, or one of other fields, was a JSONDecodeError / TypeError traceback."""
    split, _ = tree
    out = tmp_path / "out"
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(out)]) == 0
    manifest = (out / "tiny.jsonl").read_bytes()
    (out / "tiny.summary.json").write_text(summary)
    capsys.readouterr()
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asr: error: {out / 'tiny.summary.json'}: not a summary asr prepare wrote (")
    assert err.endswith("); tiny.jsonl not overwritten (remove both, or pass --force to prepare it again)\n")
    assert err.count("\n") == 1 and (out / "tiny.jsonl").read_bytes() == manifest
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(out), "--force"]) == 0
    assert json.loads((out / "tiny.summary.json").read_text())["num_utterances"] == 7


def test_durations_come_from_headers_not_decoding(tree, tmp_path, monkeypatch):
    import asr.audio

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio was decoded")

    monkeypatch.setattr(asr.audio, "load_audio_with_rate", no_decoding)
    monkeypatch.setattr(asr.audio, "load_audio", no_decoding)
    monkeypatch.setattr(sf, "read", no_decoding)
    assert prepare_split(tree[0], tmp_path / "out").num_utterances == 7


# ----------------------------------------------------------------------------------- broken trees
def _chapter(split: Path, speaker="4088", chapter="158079") -> tuple[Path, Path]:
    folder = split / speaker / chapter
    return folder, folder / f"{speaker}-{chapter}.trans.txt"


def test_missing_transcript_file(tree):
    split, _ = tree
    folder, trans = _chapter(split)
    trans.unlink()
    utts, problems, skipped = read_split(split)
    assert len(utts) == 4 and skipped == 3
    assert problems == [f"{trans}: missing; the chapter's 3 audio files are skipped"]


def test_a_transcript_that_cannot_be_read_is_a_problem_not_the_end(tree, tmp_path):
    """A folder named like the transcript (reading it raises, as a file without permission does):
    one line naming it, the chapter skipped, the rest prepared (it said 'missing')."""
    split, _ = tree
    folder, trans = _chapter(split)
    trans.unlink()
    trans.mkdir()
    report = prepare_split(split, tmp_path / "out")
    assert (report.num_utterances, report.num_skipped) == (4, 3)
    assert report.problems == [f"{trans}: cannot be read (Is a directory); the chapter's 3 audio files are skipped"]
    assert (tmp_path / "out" / "tiny.problems.txt").read_text() == report.problems[0] + "\n"


def test_folders_we_may_not_read_are_problems_not_the_end(shared_data, unprivileged, capsys):
    """A chapter or speaker folder closed to us (chmod 0): one problem line each, the rest of the
    split prepared, status 0 (it was 'asr: error: FOLDER: Permission denied', status 2, and
    nothing of that split written)."""
    folder, as_user = unprivileged
    split = folder / "tiny"
    expected = build_tree(shared_data, split, picks=(("4088", "158079", 3), ("4088", "158077", 2), ("5652", "39938", 4)))
    chapter, speaker = split / "4088" / "158077", split / "5652"
    chapter.chmod(0)
    speaker.chmod(0)
    b"x".decode("utf-8-sig")  # its codec is imported at first use, from a folder closed to that user
    with as_user():
        status = main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(folder / "out")])
    problems = [f"{chapter}: cannot be read (Permission denied); the chapter is skipped",
                f"{speaker}: cannot be read (Permission denied); the speaker's chapters are skipped"]
    assert status == 0 and capsys.readouterr().out.startswith("tiny: 3 utterances")
    assert (folder / "out" / "tiny.problems.txt").read_text().splitlines() == problems
    kept = [Path(u.audio_filepath).stem for u in read_manifest(folder / "out" / "tiny.jsonl")]
    assert kept == [uid for uid in expected if uid.startswith("4088-158079-")]


def test_a_split_we_may_not_read_is_named_not_passed_over(shared_data, unprivileged, capsys, caplog):
    """A split folder closed to us, in a folder of splits: a warning naming it (the others are
    prepared, status 0); named in --splits, one line saying so. It was passed over in silence, or
    'split(s) dev-other not found (found: dev-clean)' although it is there."""
    folder, as_user = unprivileged
    build_tree(shared_data, folder / "LibriSpeech" / "dev-clean", picks=PICKS[:1])
    build_tree(shared_data, folder / "LibriSpeech" / "dev-other", picks=PICKS[1:])
    closed = folder / "LibriSpeech" / "dev-other"
    closed.chmod(0)
    b"x".decode("utf-8-sig")  # its codec is imported at first use, from a folder closed to that user
    args = ["prepare", "librispeech", "--data-dir", str(folder), "--out", str(folder / "out")]
    with as_user():
        assert main(args) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith("dev-clean: 3 utterances") and "dev-other" not in captured.out
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            f"{closed}: cannot be read (Permission denied); not prepared"]
        caplog.clear()
        assert main([*args, "--splits", "dev-other"]) == 2
        assert capsys.readouterr().err == f"asr: error: {closed}: cannot be read (Permission denied)\n"
        assert main([*args, "--splits", "dev-clean"]) == 0
        assert "dev-other" not in caplog.text  # not asked for


def test_transcript_without_audio_and_audio_without_transcript(tree):
    split, _ = tree
    folder, trans = _chapter(split)
    (folder / "4088-158079-0001.flac").unlink()
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join(lines[:2]) + "\n")  # drops the line of 4088-158079-0002
    utts, problems, skipped = read_split(split)
    assert [Path(u.audio_filepath).stem for u in utts][:1] == ["4088-158079-0000"]
    assert len(utts) == 5 and skipped == 2
    assert problems == [
        f"{trans}:2: utterance 4088-158079-0001 has no audio file; skipped",
        f"{folder / '4088-158079-0002.flac'}: no transcript line in {trans.name}; skipped",
    ]


def test_corrupt_and_empty_flac(tree):
    split, _ = tree
    folder, _ = _chapter(split)
    bad = folder / "4088-158079-0001.flac"
    bad.write_bytes(b"fLaC" + b"\x00garbage" * 10)
    empty = folder / "4088-158079-0002.flac"
    empty.write_bytes(b"")
    utts, problems, skipped = read_split(split)
    assert len(utts) == 5 and skipped == 2
    assert len(problems) == 2
    assert problems[0].startswith(f"{bad}: ") and problems[0].endswith("; skipped")
    assert problems[1].startswith(f"{empty}: ") and "\n" not in problems[1]


def test_bad_lines(tree):
    split, _ = tree
    folder, trans = _chapter(split, "5652", "39938")
    lines = trans.read_text().splitlines()
    trans.write_bytes("\n".join([
        lines[0],
        "5652-39938-0001",  # no text
        "garbage line without an id",  # not an id of this chapter
        lines[2], lines[2],  # the same utterance twice
        "",  # blank lines are fine
        "5652-39938-0003 ...",  # text that normalizes to nothing
        "5652-39938-0009 SOME TEXT",  # no audio
    ]).encode() + b"\n5652-39938-0010 CAF\xe9\n")  # Latin-1, not UTF-8
    utts, problems, skipped = read_split(split)
    assert [Path(u.audio_filepath).stem for u in utts] == [
        "4088-158079-0000", "4088-158079-0001", "4088-158079-0002", "5652-39938-0000"]
    assert problems == [
        f"{trans}:2: utterance 5652-39938-0001 has no transcript text; skipped",
        f"{trans}:3: utterance id 'garbage' is not 5652-39938-<number>; line skipped",
        f"{trans}:5: utterance 5652-39938-0002 has more than one transcript line; skipped",
        f"{trans}:7: utterance 5652-39938-0003 has no transcript text; skipped",
        f"{trans}:9: not valid UTF-8 (byte 20); line skipped",
        f"{trans}:8: utterance 5652-39938-0009 has no audio file; skipped",
    ]
    assert skipped == 4  # 0001, 0002, 0003 (bad lines) and 0009 (no audio)


def test_tab_separated_lines_and_a_byte_order_mark_are_read(tree):
    """An editor's byte-order mark, CRLF line ends, a tab or several spaces after the id: each of
    these lines was 'utterance id ... is not <speaker>-<chapter>-<number>' and its audio skipped."""
    split, expected = tree
    folder, trans = _chapter(split, "5652", "39938")
    lines = trans.read_text().splitlines()
    edited = [lines[0].replace(" ", "\t", 1), lines[1].replace(" ", "  \t ", 1) + "  ", lines[2], lines[3]]
    trans.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(edited).encode() + b"\r\n")
    utts, problems, skipped = read_split(split)
    assert (problems, skipped) == ([], 0)
    assert {Path(u.audio_filepath).stem: u.text for u in utts} == {uid: text for uid, (text, _) in expected.items()}


def test_upper_case_audio_suffixes_are_audio(tree):
    """A copy made on a case-insensitive file system may name its files `.FLAC` or `.Flac`: each
    is its utterance's audio (it was 'has no audio file')."""
    split, expected = tree
    folder, _ = _chapter(split)
    for old, suffix in (("4088-158079-0001.flac", ".FLAC"), ("4088-158079-0002.flac", ".Flac")):
        (folder / old).rename((folder / old).with_suffix(suffix))
    utts, problems, skipped = read_split(split)
    assert (problems, skipped) == ([], 0)
    assert {Path(u.audio_filepath).name for u in utts} >= {"4088-158079-0001.FLAC", "4088-158079-0002.Flac"}
    assert {Path(u.audio_filepath).stem: (u.text, round(u.duration, 3)) for u in utts} == {
        uid: (text, round(duration, 3)) for uid, (text, duration) in expected.items()}


def test_stray_files_reported(tree):
    split, _ = tree
    folder, _ = _chapter(split)
    (folder / "notes.trans.txt").write_text("4088-158079-0000 X\n")
    shutil.copy(folder / "4088-158079-0000.flac", split / "4088" / "lost.flac")
    utts, problems, skipped = read_split(split)
    assert len(utts) == 7 and skipped == 1
    assert problems == [f"{folder / 'notes.trans.txt'}: unexpected transcript file "
                        "(expected 4088-158079.trans.txt); ignored",
                        f"{split / '4088'}: 1 audio files outside a chapter folder; skipped"]


def test_problems_file_and_cli_report(tree, tmp_path, capsys):
    split, _ = tree
    _, trans = _chapter(split)
    trans.write_text(trans.read_text() + "4088-158079-0099 NO AUDIO\n")
    assert main(["prepare", "librispeech", "--data-dir", str(split), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "tiny: 7 utterances" in out and "1 skipped" in out and "1 problems" in out
    assert "0099 has no audio file" in (tmp_path / "o" / "tiny.problems.txt").read_text()


# ----------------------------------------------------------------------------------- find_splits
def test_find_splits_layouts(tree, tmp_path):
    split, _ = tree
    root = split.parent  # .../LibriSpeech
    shutil.copytree(split, root / "other")
    (root / "not-a-split").mkdir()
    assert find_splits(split) == {"tiny": split}
    assert find_splits(root) == {"other": root / "other", "tiny": split}
    assert find_splits(root.parent) == {"other": root / "other", "tiny": split}  # download folder
    assert find_splits(root, ["tiny"]) == {"tiny": split}
    with pytest.raises(FileNotFoundError, match=r"split\(s\) nope not found \(found: other, tiny\)"):
        find_splits(root, ["tiny", "nope"])
    with pytest.raises(FileNotFoundError, match="no LibriSpeech-layout split"):
        find_splits(root / "not-a-split")
    for path, why in ((root / "nope", "no such folder"), (next(split.rglob("*.trans.txt")), "not a folder")):
        with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(path))}: {why}$"):
            find_splits(path)


def test_a_stray_audio_file_in_a_folder_of_splits_does_not_make_it_one_split(tree):
    """An audio file at <split>/<speaker>/x.flac (where chapter folders go) made the folder of
    splits match <split>/<speaker>/<chapter>/*.flac, so it was taken for one split named
    'LibriSpeech' (and a stray at LibriSpeech/<split>/x.flac did the same to the download folder).
    Now a split is found by LibriSpeech names (<speaker>-<chapter>...): the splits are the same as
    without the stray file, which is a problem line of its split."""
    split, _ = tree
    root = split.parent
    shutil.copytree(split, root / "other")
    stray = split / "4088" / "x.flac"
    shutil.copy(split / "4088" / "158079" / "4088-158079-0000.flac", stray)
    shutil.copy(stray, root / "other" / "y.flac")
    splits = {"other": root / "other", "tiny": split}
    assert find_splits(root) == splits
    assert find_splits(root.parent) == splits
    assert find_splits(split) == {"tiny": split}
    utts, problems, skipped = read_split(split)
    assert len(utts) == 7 and skipped == 1
    assert problems == [f"{split / '4088'}: 1 audio files outside a chapter folder; skipped"]
    # the one at other/y.flac (no speaker, no chapter) was dropped without a word
    utts, problems, skipped = read_split(root / "other")
    assert len(utts) == 7 and skipped == 1
    assert problems == [f"{root / 'other'}: 1 audio files outside a speaker's chapter folder; skipped"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["prepare", "librispeech", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr: error: ") and "nope" in err[0]


# ------------------------------------------------------------------------------ recipe smoke test
@pytest.mark.slow
def test_mini_librispeech_recipe_smoke(shared_data, tmp_path):
    """All six stages of recipes/mini_librispeech/run.sh on CPU, on 7 + 3 real utterances."""
    if shutil.which("asr") is None:
        pytest.fail("the `asr` console script is not on PATH (pip install -e .)")
    train = tmp_path / "tiny-train"
    build_tree(shared_data, train)
    dev = tmp_path / "tiny-dev"
    build_tree(shared_data, dev, picks=(("8226", "274371", 3),))
    exp = tmp_path / "exp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    lm_text = tmp_path / "lm.txt"  # an LM of the training transcripts: stage 6's plumbing
    lm_text.write_text("".join(normalize_text(line.split(" ", 1)[1]) + "\n"
                               for f in sorted(train.rglob("*.trans.txt")) for line in f.read_text().splitlines()))
    assert main(["build-lm", str(lm_text), "--order", "2", "--out", str(tmp_path / "lm.arpa")]) == 0
    cmd = ["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--data-dir", str(train),
           "--dev-dir", str(dev), "--ngpu", "0", "--exp", str(exp), "--lm", str(tmp_path / "lm.arpa"),
           "--lm-weights", "0,1", "--word-scores", "0", "--beam-size", "7", "preset=tiny", "epochs=1",
           "max_steps=2", "threads=1", "data.num_workers=0", "features.kind=fbank", "data.max_batch_s=60"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (exp / "model.pt").is_file()
    result = json.loads((exp / "decode" / "tiny-dev" / "result.json").read_text())
    assert result["test_set"] == "mini_librispeech-tiny-dev" and result["num_utterances"] == 3
    assert result["train_data"].startswith("tiny-train (") and result["decoding"] == "greedy"
    assert result["hardware"].endswith("-core CPU")
    with_lm = json.loads((exp / "decode" / "tiny-dev-lm" / "result.json").read_text())
    assert with_lm["num_utterances"] == 3 and with_lm["decoding"].startswith("beam 7 + lm.arpa"), with_lm["decoding"]
    assert (exp / "decode" / "tiny-dev.logprobs.pt").is_file()
    table = (exp / "RESULTS.md").read_text()
    assert "| other | mini_librispeech-tiny-dev |" in table and table.count("not run") == 11
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)  # all done: skips
    assert again.returncode == 0 and "model.pt exists" in again.stdout and "already scored" in again.stdout
    assert "already scored with the LM" in again.stdout


def test_recipe_paths_are_the_callers_and_stage_2_reruns(shared_data, tmp_path):
    """recipes/mini_librispeech/run.sh stages 1-3 from another folder with relative paths: they
    were taken relative to the repository root (--exp made a folder inside the checkout); a
    --data-dir that does not exist is one line before any stage (it was two lines of find, then
    asr's); a rerun of stage 2 keeps the manifests. A space in a folder's name is kept (stage 3
    looked for tiny.jsonl and dev.jsonl of a dev folder 'tiny dev')."""
    caller = tmp_path / "home"
    build_tree(shared_data, caller / "corpus" / "tiny-train")
    build_tree(shared_data, caller / "corpus" / "tiny dev", picks=(("8226", "274371", 2),))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = ["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--data-dir", "corpus/tiny-train",
           "--dev-dir", "corpus/tiny dev", "--exp", "my exp", "--ngpu", "0", "--stop-stage", "3"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=caller)
    assert run.returncode == 0, run.stderr
    data = caller / "my exp" / "data"
    assert len(read_manifest(data / "tiny-train.jsonl")) == 7 and len(read_manifest(data / "tiny dev.jsonl")) == 2
    assert "  tiny-train: 7 utterances\n  tiny dev: 2 utterances\n" in run.stdout
    assert not (REPO / "my exp").exists()
    manifest = (data / "tiny-train.jsonl").read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=caller)
    assert again.returncode == 0 and again.stdout.count("(already prepared)") == 2, again.stdout
    assert (data / "tiny-train.jsonl").read_bytes() == manifest

    missing = subprocess.run([*cmd[:3], "corpus/nope", *cmd[4:]], capture_output=True, text=True, env=env,
                             timeout=60, cwd=caller)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"run.sh: --data-dir {caller / 'corpus/nope'}: no such folder\n"


def test_recipe_refuses_a_missing_dev_dir_or_lm_before_any_stage(shared_data, tmp_path):
    """A --dev-dir that is not there was refused at stage 2, after the training set's manifest was
    written (and after the download without --data-dir); an --lm that is not there at stage 6, after
    training. Now both are one line and status 2 before anything is made in --exp; stages that do
    not read them run without them."""
    build_tree(shared_data, tmp_path / "tiny-train")
    base = ["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--data-dir", "tiny-train", "--exp", "exp",
            "--ngpu", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args, message in [(["--dev-dir", "nope"], f"run.sh: --dev-dir {tmp_path / 'nope'}: no such folder\n"),
                          (["--lm", "nope.arpa"], f"run.sh: --lm {tmp_path / 'nope.arpa'}: no such file\n")]:
        run = subprocess.run(base + args, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert (run.returncode, run.stdout, run.stderr) == (2, "", message)
        assert not (tmp_path / "exp").exists()
    run = subprocess.run(base + ["--dev-dir", "nope", "--lm", "nope.arpa", "--stage", "7"], capture_output=True,
                         text=True, env=env, timeout=60, cwd=tmp_path)
    assert run.returncode == 1 and "holds no result.json" in run.stderr  # stage 7 alone reads neither


def test_recipe_without_the_training_manifest_names_it_and_train_split(shared_data, tmp_path):
    """A --data-dir of splits without train-clean-5 (the default training split): stage 3 said
    only '<exp>/data/train-clean-5.jsonl missing or empty' (and stage 4 run alone, asr train's
    'cannot read manifest'), not which option names the split. Now one line names the manifest
    looked for, --train-split and the manifests there, status 2, before stage 3 or 4; with
    --train-split it goes on."""
    build_tree(shared_data, tmp_path / "corpus" / "tiny-a")
    build_tree(shared_data, tmp_path / "corpus" / "tiny-b", picks=(("8226", "274371", 2),))
    base = ["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--data-dir", "corpus", "--dev-dir", "corpus/tiny-b",
            "--exp", "exp", "--ngpu", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    data = tmp_path / "exp" / "data"
    message = (f"run.sh: training manifest {data}/train-clean-5.jsonl missing or empty: --train-split NAME names "
               f"the split to train on (manifests in {data}: tiny-a, tiny-b)\n")
    for stages in (["--stop-stage", "3"], ["--stage", "4", "--stop-stage", "4", "preset=tiny"]):
        run = subprocess.run(base + stages, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert (run.returncode, run.stderr) == (2, message), run.stdout
        assert "stage 3:" not in run.stdout and "stage 4:" not in run.stdout
    run = subprocess.run(base + ["--stage", "3", "--stop-stage", "3", "--train-split", "tiny-a"], capture_output=True,
                         text=True, env=env, timeout=60, cwd=tmp_path)
    assert run.returncode == 0 and "  tiny-a: 7 utterances\n" in run.stdout, run.stderr


def test_results_stage_needs_results_and_keeps_the_users_file(tmp_path):
    """The recipes' last stage (recipes/common.sh results_stage): no table without a result, never
    over a RESULTS.md it did not write, and a failed table leaves the earlier file whole."""
    exp = tmp_path / "exp"
    cmd = ["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--exp", str(exp), "--ngpu", "0",
           "--stage", "7", "--stop-stage", "7"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1 and "holds no result.json: run the evaluation stage first" in run.stderr
    assert not (exp / "RESULTS.md").exists()

    (exp / "decode" / "dev").mkdir(parents=True)
    (exp / "decode" / "dev" / "result.json").write_text('{"test_set": "dev", "wer": "bad"}')
    mine = exp / "RESULTS.md"
    mine.write_text("# my notes\n")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1 and "was not written by run.sh" in run.stderr
    assert mine.read_text() == "# my notes\n"

    marker = "<!-- written by the recipe's run.sh: a rerun of its last stage replaces this file -->"
    mine.write_text(marker + "\nan earlier table\n")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)  # asr compare fails
    assert run.returncode == 1 and "not written (asr compare failed)" in run.stderr, run.stderr
    assert mine.read_text() == marker + "\nan earlier table\n" and sorted(p.name for p in exp.iterdir()) == [
        "RESULTS.md", "decode", "log"]

    result = {"test_set": "mini_librispeech-dev", "wer": 12.5, "train_data": "t", "model": "m",
              "decoding": "greedy", "hardware": "2-core CPU"}
    (exp / "decode" / "dev" / "result.json").write_text(json.dumps(result))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    table = mine.read_text()
    assert table.startswith(marker + "\n# mini-LibriSpeech, conf medium_aug (") and "| mini_librispeech-dev |" in table
    assert "12.5" in table


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_results_stage_interrupted_leaves_no_temporary_file(sig, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) or a kill (SIGTERM) while the results stage
    writes its table left RESULTS.md.tmp.<pid> behind; now the temporary file goes, the earlier
    RESULTS.md stays as it was, and run.sh ends by that signal. The table comes from a stand-in
    `asr` on PATH that prints a line, then waits on a named pipe: the signal lands mid-table."""
    exp = tmp_path / "exp"
    (exp / "decode" / "dev").mkdir(parents=True)
    (exp / "decode" / "dev" / "result.json").write_text("{}")
    marker = "<!-- written by the recipe's run.sh: a rerun of its last stage replaces this file -->"
    (exp / "RESULTS.md").write_text(marker + "\nan earlier table\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "asr").write_text(f"#!/bin/sh\necho '| a partial table |'\nexec cat '{fifo}'\n")
    (bin_dir / "asr").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", str(REPO / "recipes/mini_librispeech/run.sh"), "--exp", str(exp), "--ngpu", "0",
                             "--stage", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    while True:  # until the stand-in has the pipe open: the table is half written
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"the stand-in never opened the pipe: {proc.communicate()}") from None
            time.sleep(0.05)
    try:
        assert [p.name for p in exp.glob("RESULTS.md.tmp.*")] == [f"RESULTS.md.tmp.{proc.pid}"]
        os.killpg(proc.pid, sig)
        proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == -sig
    assert sorted(p.name for p in exp.iterdir()) == ["RESULTS.md", "decode", "log"]
    assert (exp / "RESULTS.md").read_text() == marker + "\nan earlier table\n"

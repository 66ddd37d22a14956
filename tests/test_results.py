"""Measured-results files, ``asr evaluate --results-json`` and the ``asr compare`` table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asr.checkpoint import checkpoint_payload, save_checkpoint
from asr.cli import main
from asr.datasets.librispeech import prepare_split
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, load_preset
from asr.recognizer import Recognizer
from asr.results import (PAPER_ROWS, MeasuredResult, ResultsError, comparison_table, read_results,
                         write_result)
from asr.tokenizer import CharTokenizer

# The DS2 paper's Table 13, as the issue quotes it: (DS1, DS2, human) WER in %.
PAPER = {
    "WSJ eval'92": (4.94, 3.60, 5.03), "WSJ eval'93": (6.94, 4.98, 8.08),
    "LibriSpeech test-clean": (7.89, 5.33, 5.83), "LibriSpeech test-other": (21.74, 13.25, 12.69),
    "VoxForge American-Canadian": (15.01, 7.55, 4.85), "VoxForge Commonwealth": (28.46, 13.56, 8.15),
    "VoxForge European": (31.20, 17.55, 12.76), "VoxForge Indian": (45.35, 22.44, 22.15),
    "CHiME eval clean": (6.30, 3.34, 3.46), "CHiME eval real": (67.94, 21.79, 11.84),
    "CHiME eval sim": (80.27, 45.05, 31.33),
}


def _result(test_set="librispeech-test-clean", wer=12.5, **kw) -> MeasuredResult:
    fields = dict(train_data="LibriSpeech train-clean-100 (100.6 h)", model="medium, 30.9 M parameters",
                  decoding="greedy", hardware="1x NVIDIA H100", commit="abc1234", date="2025-01-31")
    fields.update(kw)
    return MeasuredResult(test_set, wer, **fields)


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| speech")]


def test_paper_rows_are_the_papers_table():
    assert {r.test_set: (r.ds1, r.ds2, r.human) for r in PAPER_ROWS} == PAPER
    assert [r.category for r in PAPER_ROWS] == ["read"] * 4 + ["accented"] * 4 + ["noisy"] * 3
    assert len({r.key for r in PAPER_ROWS}) == 11


def test_table_keeps_huge_and_tiny_wers_short():
    """A record's WER of 1e300 (any finite number is read) filled a row with 301 digits."""
    rows = _rows(comparison_table([_result(wer=1e300), _result("mine", 1e-300), _result("big", 123456.0)]))
    assert [r for r in rows if r[1] == "LibriSpeech test-clean"][0][5] == "1e+300"
    assert [r[5] for r in rows if r[0] == "other"] == ["0.00", "1.23e+05"]


def test_table_without_results_says_not_run():
    rows = _rows(comparison_table([]))
    assert [r[1] for r in rows] == list(PAPER)
    for r in rows:
        assert tuple(float(x) for x in r[2:5]) == PAPER[r[1]]
        assert r[5:] == ["not run", "-", "-", "-", "-", "-"]


def test_table_marks_each_measurement():
    results = [_result(), _result(wer=10.0, model="ds2, 96.3 M parameters", hardware="8x NVIDIA H100"),
               _result("wsj-eval92", 9.876, train_data="WSJ si284 (81 h)"),
               _result("mini_librispeech-dev-4spk", 55.5, decoding="beam 32 | 4-gram")]
    rows = _rows(comparison_table(results))
    clean = [r for r in rows if r[1] == "LibriSpeech test-clean"]
    assert [r[5:] for r in clean] == [
        ["12.50", "LibriSpeech train-clean-100 (100.6 h)", "medium, 30.9 M parameters", "greedy",
         "1x NVIDIA H100", "abc1234 2025-01-31"],
        ["10.00", "LibriSpeech train-clean-100 (100.6 h)", "ds2, 96.3 M parameters", "greedy",
         "8x NVIDIA H100", "abc1234 2025-01-31"]]
    assert [r for r in rows if r[1] == "WSJ eval'92"][0][5:7] == ["9.88", "WSJ si284 (81 h)"]
    other = rows[-1]
    assert other[:6] == ["other", "mini_librispeech-dev-4spk", "-", "-", "-", "55.50"]
    assert "beam 32 \\| 4-gram" in comparison_table(results)  # a '|' cannot break the table
    assert sum(r[5] == "not run" for r in rows) == 9


def test_results_files_roundtrip_and_formats(tmp_path):
    a, b = _result(), _result("librispeech-test-other", 30.0, cer=12.0, num_utterances=2939)
    write_result(a, tmp_path / "exp" / "decode" / "test-clean" / "result.json")
    write_result(b, tmp_path / "exp" / "decode" / "test-other" / "result.json")
    assert read_results([tmp_path / "exp"]) == [a, b]  # folders are searched for results files
    write_result(b, tmp_path / "exp" / "greedy.json")  # whatever their name; other JSON is passed over
    (tmp_path / "exp" / "decode" / "dev.summary.json").write_text('{"num_utterances": 3}')
    assert read_results([tmp_path / "exp"]) == [a, b]  # the copy of b in greedy.json is listed once
    (tmp_path / "exp" / "greedy.json").unlink()
    (tmp_path / "list.json").write_text(json.dumps([a.to_dict(), b.to_dict()]))
    (tmp_path / "lines.jsonl").write_text(json.dumps(a.to_dict()) + "\n\n" + json.dumps(b.to_dict()) + "\n")
    assert read_results([tmp_path / "list.json"]) == read_results([tmp_path / "lines.jsonl"]) == [a, b]


@pytest.mark.parametrize(("content", "pattern"), [
    ('{"test_set": "x", "wer": 1.0}', r"bad\.json: missing keys train_data, model, decoding, hardware"),
    (json.dumps({**_result().to_dict(), "werr": 1}), r"bad\.json: unknown keys werr"),
    (json.dumps({**_result().to_dict(), "wer": "12"}), r"bad\.json: 'wer' must be a percentage"),
    (json.dumps(_result().to_dict()) + "\n{oops\n", r"bad\.json:2: invalid JSON"),
    ("[1]", r"bad\.json: expected a JSON object, got int"),
    (json.dumps({**_result().to_dict(), "test_set": " "}), r"bad\.json: 'test_set' is empty$"),  # a row with no name
])
def test_malformed_results_rejected(tmp_path, content, pattern):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ResultsError, match=pattern):
        read_results([tmp_path / "bad.json"])


def test_cli_compare(tmp_path, capsys):
    write_result(_result(), tmp_path / "r.json")
    assert main(["compare", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "| read | LibriSpeech test-clean | 7.89 | 5.33 | 5.83 | 12.50 |" in out
    assert out.count("not run") == 10 and "Table 13" in out
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0]
    assert main(["compare", str(tmp_path / "missing.json")]) == 2


def test_evaluate_writes_results_json(shared_data, checkpoint, tmp_path, capsys):
    """``asr evaluate --results-json`` on 2 real utterances with an untrained tiny model."""
    src = shared_data / "LibriSpeech" / "dev-4spk" / "8226" / "274371"
    folder = tmp_path / "tiny" / "8226" / "274371"
    folder.mkdir(parents=True)
    lines = (src / "8226-274371.trans.txt").read_text().splitlines()[:2]
    for line in lines:
        uid = line.split()[0]
        (folder / f"{uid}.flac").write_bytes((src / f"{uid}.flac").read_bytes())
    (folder / "8226-274371.trans.txt").write_text("\n".join(lines) + "\n")
    report = prepare_split(tmp_path / "tiny", tmp_path / "data")  # the checkpoint's training manifest
    out = tmp_path / "decode"
    assert main(["evaluate", str(checkpoint), str(report.manifest), "--out", str(out), "--results-json",
                 str(out / "result.json"), "--test-set", "librispeech-test-clean", "--hardware", "2-core CPU"]) == 0
    assert f"results: {out / 'result.json'}" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    wer_line = (out / "wer.txt").read_text().splitlines()[0]  # "WER 98.00 % [ ... ]"
    assert result["wer"] == pytest.approx(float(wer_line.split()[1]), abs=0.005)
    words = sum(len(line.split()) - 1 for line in lines)
    assert (result["test_set"], result["num_utterances"], result["num_words"]) == ("librispeech-test-clean", 2, words)
    assert result["train_data"] == f"tiny ({report.duration_s / 3600:.2f} h)"
    assert result["model"] == "tiny, 0.1 M parameters" and result["decoding"] == "greedy"
    assert result["hardware"] == "2-core CPU" and result["checkpoint"] == str(checkpoint)
    assert isinstance(result["commit"], str) and len(result["date"]) == 10  # commit: "" outside git
    row = [r for r in _rows(comparison_table(read_results([out]))) if r[1] == "LibriSpeech test-clean"][0]
    assert row[5:10] == [f"{result['wer']:.2f}", result["train_data"], result["model"], "greedy", "2-core CPU"]


def test_results_of_exported_and_averaged_checkpoints_say_so(shared_data, checkpoint, tmp_path, capsys):
    """A result of an fp16/bf16 export or of an average read like one of the trained float32 weights
    ('tiny, 0.1 M parameters'); the WER of a bf16 export is the float32 one's on this utterance."""
    uid = "8226-274371-0020"
    audio = shared_data / "LibriSpeech" / "dev-4spk" / "8226" / "274371" / f"{uid}.flac"
    text = dict(line.split(" ", 1) for line in (audio.parent / "8226-274371.trans.txt").read_text().splitlines())[uid]
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(audio), "duration": 1.0, "text": text}) + "\n")
    half, averaged = tmp_path / "half.pt", tmp_path / "avg.pt"
    assert main(["export", str(checkpoint), "--dtype", "bf16", "--out", str(half)]) == 0
    assert main(["average", str(checkpoint), str(checkpoint), "--out", str(averaged)]) == 0
    models = {}
    for name, path in (("full", checkpoint), ("half", half), ("avg", averaged)):
        assert main(["evaluate", str(path), str(manifest), "--out", str(tmp_path / name),
                     "--results-json", str(tmp_path / f"{name}.json")]) == 0
        models[name] = json.loads((tmp_path / f"{name}.json").read_text())
    capsys.readouterr()
    assert {k: v["model"] for k, v in models.items()} == {
        "full": "tiny, 0.1 M parameters", "half": "tiny, 0.1 M parameters, bf16 weights",
        "avg": "tiny, 0.1 M parameters, average of 2 checkpoints"}
    assert models["half"]["wer"] == models["full"]["wer"] == models["avg"]["wer"]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    features = FeatureExtractor(FeatureConfig(kind="fbank"))
    tokenizer = CharTokenizer()
    model = DeepSpeech2(load_preset("tiny"), num_features=features.num_features, vocab_size=tokenizer.vocab_size)
    recognizer = Recognizer(features=features, model=model, tokenizer=tokenizer).eval()
    path = tmp_path / "run" / "model.pt"
    config = {"preset": "tiny", "data": {"train_manifest": str(tmp_path / "data" / "tiny.jsonl")}}
    save_checkpoint(checkpoint_payload(recognizer, config=config), path)
    return path


_BASE = {"test_set": "t", "wer": 5, "train_data": "x", "model": "m", "decoding": "g", "hardware": "h"}


@pytest.mark.parametrize(("extra", "pattern"), [  # each was an AttributeError/TypeError traceback, or accepted
    ({"test_set": 5}, r"'test_set' must be a string, got int"),
    ({"test_set": ["a"]}, r"'test_set' must be a string, got list"),
    ({"train_data": 3}, r"'train_data' must be a string, got int"),
    ({"train_data": None}, r"'train_data' must be a string, got null"),
    ({"hardware": {"gpu": 1}}, r"'hardware' must be a string, got dict"),
    ({"date": 5}, r"'date' must be a string, got int"),
    ({"commit": [1]}, r"'commit' must be a string, got list"),
    ({"wer": float("nan")}, r"'wer' must be a percentage >= 0 \(a finite number\), got nan"),
    ({"wer": float("inf")}, r"'wer' must be a percentage >= 0 \(a finite number\), got inf"),
    ({"wer": 10**400}, r"'wer' must be a percentage >= 0"),
    ({"wer": None}, r"'wer' must be a percentage >= 0"),
    ({"cer": float("-inf")}, r"'cer' must be a percentage >= 0"),
    ({"num_words": "3"}, r"'num_words' must be a count >= 0, got '3'"),
    ({"num_utterances": -1}, r"'num_utterances' must be a count >= 0, got -1"),
])
def test_results_with_wrong_types_or_values_are_results_errors(tmp_path, capsys, extra, pattern):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**_BASE, **extra}))  # json writes NaN and Infinity, as Python reads them
    with pytest.raises(ResultsError, match=rf"^{path}: {pattern}"):
        read_results([path])
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asr: error: {path}: ")


def test_results_null_optional_fields_lists_and_deep_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**_BASE, "commit": None, "cer": None, "num_words": None}))
    assert read_results([path]) == [MeasuredResult("t", 5, "x", "m", "g", "h")]  # null: the default
    path.write_text(json.dumps([_BASE, {**_BASE, "test_set": "u"}]))  # a list of objects
    assert [r.test_set for r in read_results([path])] == ["t", "u"]
    path.write_text("[1, 2]")
    with pytest.raises(ResultsError, match=r"r\.json: expected a JSON object, got int"):
        read_results([path])
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ResultsError, match=r"deep\.json: invalid JSON \(nested too deeply\)"):
        read_results([tmp_path / "deep.json"])
    (tmp_path / "deep.json").write_text(json.dumps(_BASE) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ResultsError, match=r"deep\.json:2: invalid JSON \(nested too deeply\)"):
        read_results([tmp_path / "deep.json"])
    path.write_text(json.dumps(_BASE))
    assert [r.test_set for r in read_results([tmp_path])] == ["t"]  # the folder search passes over deep.json


def test_folder_search_reads_json_lines_and_names_what_it_skips(tmp_path, caplog):
    a, b = _result(), _result("librispeech-test-other", 30.0)
    (tmp_path / "lines.json").write_text(json.dumps(a.to_dict()) + "\n" + json.dumps(b.to_dict()) + "\n")
    (tmp_path / "cut.json").write_text(json.dumps(a.to_dict())[:40])  # a results file cut short
    (tmp_path / "other.json").write_text('{"num_utterances": 3}')
    assert read_results([tmp_path]) == [a, b]
    assert [r.getMessage() for r in caplog.records] == [f"skipped {tmp_path / 'cut.json'}:1: invalid JSON "
                                                        "(Unterminated string starting at)"]


def test_folder_search_skips_a_malformed_results_file_and_says_when_none_is_found(tmp_path, caplog, capsys):
    """``asr compare DIR`` is a batch over the folder: one damaged results file is named and passed
    over, the others are still compared; a folder without any result says so."""
    good = _result()
    write_result(good, tmp_path / "exp" / "good.json")
    (tmp_path / "exp" / "edited.json").write_text(json.dumps({**good.to_dict(), "wer": "12.5"}))
    (tmp_path / "exp" / "partial.json").write_text('{"test_set": "x", "wer": 1.0}')
    assert read_results([tmp_path / "exp"]) == [good]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped {tmp_path / 'exp' / 'edited.json'}: 'wer' must be a percentage >= 0 (a finite number), got '12.5'",
        f"skipped {tmp_path / 'exp' / 'partial.json'}: missing keys train_data, model, decoding, hardware"]
    assert main(["compare", str(tmp_path / "exp")]) == 1  # the table, and a status saying files were passed over
    assert "| read | LibriSpeech test-clean | 7.89 | 5.33 | 5.83 | 12.50 |" in capsys.readouterr().out
    caplog.clear()
    (tmp_path / "empty").mkdir()
    assert read_results([tmp_path / "empty"]) == []
    assert main(["compare", str(tmp_path / "exp" / "good.json")]) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'empty'}: no results of asr evaluate --results-json found in this folder"]


def test_a_results_file_given_twice_is_listed_once(tmp_path, caplog, capsys):
    """``asr compare r.json r.json`` and ``asr compare exp exp/r.json`` (a shell glob and a name typed
    again) listed the same measurement twice, as if it had been made twice."""
    write_result(_result(), tmp_path / "exp" / "r.json")
    again = tmp_path / "exp" / ".." / "exp" / "r.json"
    (tmp_path / "hard.json").hardlink_to(tmp_path / "exp" / "r.json")
    for given in ([tmp_path / "exp" / "r.json", again], [tmp_path / "exp", again],
                  [tmp_path / "exp", tmp_path / "hard.json"]):
        again = given[-1]
        caplog.clear()
        assert read_results(given) == [_result()]
        assert [r.getMessage() for r in caplog.records] == [f"{again}: given more than once; its results are listed once"]
    assert main(["compare", str(tmp_path / "exp"), str(tmp_path / "exp" / "r.json")]) == 0  # nothing passed over
    assert capsys.readouterr().out.count("| 12.50 |") == 1
    caplog.clear()  # named first, then found in its folder: the folder holds results all the same (was 'no results')
    assert read_results([tmp_path / "exp" / "r.json", tmp_path / "exp"]) == [_result()]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'exp' / 'r.json'}: given more than once; its results are listed once"]


def test_a_copy_of_a_result_under_another_name_is_listed_once(tmp_path, caplog, capsys):
    """`cp exp/a/decode/test/result.json results/a-test.json`, then `asr compare exp results`:
    the one measurement was listed twice. A record equal in every field to one read before is
    listed once, with a warning naming both places; one that differs in any field (here the date
    of a measurement made again) is a measurement of its own, listed too. Nothing is passed over."""
    write_result(_result(), tmp_path / "exp" / "a.json")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "copy.json").write_bytes((tmp_path / "exp" / "a.json").read_bytes())
    again = _result(date="2025-02-01")
    (tmp_path / "results" / "all.jsonl.json").write_text(
        "".join(json.dumps(r.to_dict()) + "\n" for r in (_result(), again, again)))
    assert read_results([tmp_path / "exp", tmp_path / "results"]) == [_result(), again]
    copy, lines = tmp_path / "results" / "copy.json", tmp_path / "results" / "all.jsonl.json"
    assert [r.getMessage() for r in caplog.records] == [
        f"{lines}:1: the same result as {tmp_path / 'exp' / 'a.json'} (a copy?); listed once",
        f"{lines}:3: the same result as {lines}:2 (a copy?); listed once",
        f"{copy}: the same result as {tmp_path / 'exp' / 'a.json'} (a copy?); listed once"]
    caplog.clear()
    assert main(["compare", str(tmp_path / "exp"), str(copy)]) == 0
    assert capsys.readouterr().out.count("| 12.50 |") == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"{copy}: the same result as {tmp_path / 'exp' / 'a.json'} (a copy?); listed once"]


def test_compare_refuses_a_named_file_without_results_and_a_binary_file(tmp_path, capsys):
    """An empty file or list given by name added nothing to the table, with status 0; a checkpoint
    given by mistake was 'cannot read ('utf-8' codec can't decode byte 0x80 in position 64: ...)'."""
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[]\n")
    model = tmp_path / "model.pt"
    features = FeatureExtractor(FeatureConfig(kind="fbank"))
    tok = CharTokenizer()
    save_checkpoint(checkpoint_payload(Recognizer(features, DeepSpeech2(load_preset("tiny"), features.num_features,
                                                                        tok.vocab_size), tok)), model)
    for name, cause in (("empty.json", "holds no results (an empty file or list)"),
                        ("list.json", "holds no results (an empty file or list)"),
                        ("model.pt", "not a results file (not UTF-8 text: a binary file?)")):
        assert main(["compare", str(tmp_path / name)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == f"asr: error: {tmp_path / name}: {cause}\n"


def test_compare_names_a_file_it_may_not_read_in_few_words(unprivileged, capsys):
    """It was 'cannot read ([Errno 13] Permission denied: 'closed.json')', the file named twice."""
    folder, as_user = unprivileged
    closed = folder / "closed.json"
    write_result(_result(), closed)
    closed.chmod(0)
    with as_user():
        assert main(["compare", str(closed)]) == 2
    assert capsys.readouterr().err == f"asr: error: {closed}: cannot read (Permission denied)\n"


def test_compare_notes_a_test_set_that_probably_means_a_paper_row(tmp_path, capsys):
    """evaluate's default test set is the manifest's name: a result on test-clean.jsonl landed under
    'other', with nothing saying why the paper's LibriSpeech test-clean row stayed 'not run'."""
    write_result(_result(test_set="test-clean"), tmp_path / "a.json")
    write_result(_result(test_set="librispeech-test-othr"), tmp_path / "b.json")
    write_result(_result(test_set="digits-test"), tmp_path / "c.json")
    assert main(["compare", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| other | test-clean |" in captured.out
    assert captured.err == (
        "asr: note: test set 'test-clean' is listed under 'other'; asr evaluate --test-set librispeech-test-clean "
        "puts such a result on the paper's row\n"
        "asr: note: test set 'librispeech-test-othr' is listed under 'other'; asr evaluate --test-set "
        "librispeech-test-other puts such a result on the paper's row\n")


def test_a_results_file_with_a_byte_order_mark_is_read(tmp_path):
    """A result.json saved again by an editor that writes a UTF-8 byte-order mark was 'invalid JSON
    (Unexpected UTF-8 BOM (decode using utf-8-sig))', and passed over in a folder."""
    write_result(_result(), tmp_path / "exp" / "r.json")
    (tmp_path / "exp" / "r.json").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "exp" / "r.json").read_bytes())
    assert read_results([tmp_path / "exp" / "r.json"]) == [_result()]
    assert read_results([tmp_path / "exp"]) == [_result()]

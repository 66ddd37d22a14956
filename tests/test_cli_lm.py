"""``asr build-lm``, and beam search with an LM in ``asr transcribe / evaluate / tune-lm``, on a tiny
model trained for this module on real speech."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
import soundfile as sf
import torch

from asr.checkpoint import save_checkpoint
from asr.cli import main
from asr.lm import arpa_vocabulary
from asr.text import normalize_text

UTTS = ["8226-274371-0020", "5652-19215-0032", "4088-158077-0078", "4406-16882-0033"]


def _flac(shared_data: Path, uid: str) -> Path:
    speaker, chapter, _ = uid.split("-")
    return shared_data / "LibriSpeech" / "dev-4spk" / speaker / chapter / f"{uid}.flac"


@pytest.fixture(scope="module")
def work(shared_data: Path, tmp_path_factory) -> dict:
    """A manifest of 4 real utterances, a tiny model trained on them, LM text of their chapters."""
    tmp = tmp_path_factory.mktemp("cli_lm")
    entries, chapters = [], []
    for uid in UTTS:
        path = _flac(shared_data, uid)
        speaker, chapter, _ = uid.split("-")
        trans = path.parent / f"{speaker}-{chapter}.trans.txt"
        lines = dict(line.split(" ", 1) for line in trans.read_text().splitlines())
        chapters += list(lines.values())
        entries.append({"audio_filepath": str(path), "duration": sf.info(path).duration, "text": lines[uid]})
    manifest = tmp / "dev.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    text = tmp / "lm.txt"
    text.write_text("\n".join(chapters) + "\n")
    conf = tmp / "conf.yaml"
    conf.write_text(f"preset: tiny\ndata:\n  train_manifest: {manifest}\n  max_batch_size: 4\n"
                    "epochs: 2\noptim:\n  lr: 3e-3\n  warmup_steps: 1\n")
    run_dir = tmp / "run"
    assert main(["train", str(conf), f"out_dir={run_dir}", "device=cpu", "threads=1", "features.kind=fbank"]) == 0
    return {"manifest": manifest, "model": run_dir / "model.pt", "text": text, "entries": entries, "tmp": tmp}


@pytest.fixture(scope="module")
def arpa(work) -> Path:
    out = work["tmp"] / "lm" / "3gram.arpa"
    assert main(["build-lm", str(work["text"]), "--order", "3", "--prune", "0", "0", "1", "--out", str(out),
                 "--backend", "python"]) == 0
    return out


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr: error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def test_build_lm_prints_counts(work, arpa, capsys):
    out = work["tmp"] / "lm" / "chars.arpa"
    assert main(["build-lm", str(work["text"]), "--order", "5", "--units", "chars", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(out))}: \d+ sentences, 1-grams=\d+ .* 5-grams=\d+ \((python|kenlm)\)", line)
    assert "|" in arpa_vocabulary(out)
    vocab = set(arpa_vocabulary(arpa))
    assert {"the", "and"} <= vocab and all(w == normalize_text(w) for w in vocab)


def test_transcribe_with_lm_json_timestamps_nbest_srt(work, arpa, capsys):
    files = [e["audio_filepath"] for e in work["entries"][:2]]
    srt_dir = work["tmp"] / "srt"
    assert main(["transcribe", str(work["model"]), *files, "--lm", str(arpa), "--lm-weight", "1.5",
                 "--word-score", "1", "--beam-size", "20", "--nbest", "3", "--json", "--srt", str(srt_dir)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    vocab = set(arpa_vocabulary(arpa))
    for record, path in zip(records, files):
        assert record["path"] == path
        words = record["words"]
        assert record["text"] and [w["word"] for w in words] == record["text"].split()
        assert set(record["text"].split()) <= vocab  # lexicon decoding with the LM's words
        times = [t for w in words for t in (w["start_s"], w["end_s"])]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= record["duration_s"]
        assert all(w["start_s"] < w["end_s"] and 0 <= w["confidence"] <= 1 for w in words)
        assert 1 <= len(record["nbest"]) <= 3 and record["nbest"][0]["text"] == record["text"]
        srt = (srt_dir / f"{Path(path).stem}.srt").read_text()
        assert srt.startswith("1\n00:00:") and " --> " in srt
        assert " ".join(line for block in srt.strip().split("\n\n") for line in block.splitlines()[2:]) == record["text"]


def test_frame_shift_matches_the_model_output(work):
    import torch

    from asr.audio import load_audio
    from asr.checkpoint import load_recognizer

    recognizer = load_recognizer(work["model"])
    wave = torch.from_numpy(load_audio(work["entries"][0]["audio_filepath"]))  # (S,)
    _, out_lens = recognizer.log_probs(wave[None], torch.tensor([wave.numel()]))
    assert recognizer.frame_shift_s == pytest.approx(0.02)  # 10 ms hop, time stride 2
    assert float(out_lens[0]) * recognizer.frame_shift_s == pytest.approx(wave.numel() / 16000, abs=0.03)


def test_lm_decoding_beats_greedy_on_real_outputs(work, arpa, capsys, tmp_path):
    """A weak check (the 2-step model is nearly untrained, greedy WER is 100 %): the LM-constrained
    beam search still gets words right. Error repair itself is tested in test_beam_search.py."""
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "greedy")]) == 0
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "lm"),
                 "--lm", str(arpa), "--lm-weight", "2", "--word-score", "0"]) == 0
    out = capsys.readouterr().out
    wers = [float(x) for x in re.findall(r"^WER ([\d.]+) %", out, flags=re.M)]
    assert len(wers) == 2 and wers[1] < wers[0], out
    assert (tmp_path / "lm" / "hyps.txt").read_text().count("\n") == len(UTTS)


def test_tune_lm_cache_follows_the_checkpoint_bytes(work, arpa, caplog, tmp_path):
    """A copy of the checkpoint elsewhere reads the cache; another model written in its place, with
    the same size and modification time, does not (a key of name, size and time would match it)."""
    model = tmp_path / "model.pt"
    ckpt = torch.load(work["model"], weights_only=True)
    save_checkpoint(ckpt, model)  # the writer that writes the other model below: the same size
    args = ["tune-lm", str(model), str(work["manifest"]), "--lm", str(arpa), "--lm-weights", "1",
            "--word-scores", "0", "--beam-size", "8", "--cache", str(tmp_path / "lp.pt")]
    assert main(args) == 0
    moved = tmp_path / "moved.pt"
    model.rename(moved)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asr.tune"):
        assert main([args[0], str(moved), *args[2:]]) == 0
    assert any("from " + str(tmp_path / "lp.pt") in r.getMessage() for r in caplog.records)
    name = next(k for k, v in ckpt["model_state"].items() if v.is_floating_point())
    ckpt["model_state"][name] = ckpt["model_state"][name] * 2
    save_checkpoint(ckpt, model)
    st = moved.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model.stat().st_size == st.st_size and model.stat().st_mtime_ns == st.st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asr.tune"):
        assert main(args) == 0
    assert any("computing again" in r.getMessage() for r in caplog.records)


def test_evaluate_with_lm_on_several_processes_equals_one(work, arpa, capsys, tmp_path):
    common = ["evaluate", str(work["model"]), str(work["manifest"]), "--lm", str(arpa), "--lm-weight", "2",
              "--word-score", "2", "--beam-size", "20"]
    assert main([*common, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = ((tmp_path / d / "hyps.txt").read_text() for d in ("one", "two"))
    assert one == two and one.count("\n") == len(UTTS) and one.split()


def test_tune_lm_prints_the_best_pair(work, arpa, capsys, caplog, tmp_path):
    args = ["tune-lm", str(work["model"]), str(work["manifest"]), "--lm", str(arpa),
            "--lm-weights", "0,2", "--word-scores", "0:2:2", "--beam-size", "20", "--cache", str(tmp_path / "lp.pt")]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    result = tmp_path / "greedy.json"
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "greedy"),
                 "--results-json", str(result)]) == 0
    m = re.match(r"greedy WER ([\d.]+) %", out[0])  # the same as `asr evaluate`'s greedy figure
    assert m and float(m[1]) == pytest.approx(json.loads(result.read_text())["wer"], abs=0.01)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="asr.tune"):
        assert main(args) == 0  # the second run reads the cached log-probs: same table
    assert capsys.readouterr().out.splitlines() == out
    assert any("from " + str(tmp_path / "lp.pt") in r.getMessage() for r in caplog.records)
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(work["manifest"].read_text().splitlines(keepends=True)[:2]))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asr.tune"):  # another set: the cache is not used, but replaced
        assert main([*args[:2], str(fewer), *args[3:]]) == 0
    assert any("computing again" in r.getMessage() for r in caplog.records)
    assert len(torch.load(tmp_path / "lp.pt", weights_only=True)["log_probs"]) == 2
    capsys.readouterr()
    rows = [line.split() for line in out[2:-1]]
    assert len(rows) == 4
    best = min(rows, key=lambda r: float(r[2]))
    marked = [r for r in rows if r[-1] == "*"]
    assert marked == [best + ["*"]] if len(best) == 3 else marked == [best]
    m = re.match(r"best lm_weight (\S+) word_score (\S+) WER ([\d.]+) %", out[-1])
    assert m and float(m[3]) == pytest.approx(float(best[2])), out[-1]
    assert (float(m[1]), float(m[2])) == (float(marked[0][0]), float(marked[0][1]))


def test_user_errors_are_one_line(work, arpa, capsys, tmp_path):
    model, audio = str(work["model"]), work["entries"][0]["audio_filepath"]
    assert main(["transcribe", model, audio, "--lm", str(tmp_path / "none.arpa")]) == 2
    _one_line_error(capsys, "none.arpa", "no such language model")
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"\0binary")
    assert main(["evaluate", model, str(work["manifest"]), "--lm", str(binary)]) == 2
    _one_line_error(capsys, "lm.bin", "nor a KenLM binary")
    assert main(["transcribe", model, audio, "--beam-size", "0"]) == 2
    _one_line_error(capsys, "--beam-size 0: must be >= 1")
    assert main(["tune-lm", model, str(work["manifest"]), "--lm", str(arpa), "--lm-weights", "0:1"]) == 2
    _one_line_error(capsys, "0:1")
    assert main(["build-lm", str(work["text"]), "--prune", "1", "--out", str(tmp_path / "x.arpa")]) == 2
    _one_line_error(capsys, "prune=[1]")
    assert main(["build-lm", str(work["text"]), "--order", "2", "--prune", "0", "0", "1", "--out", str(tmp_path / "x.arpa")]) == 2
    _one_line_error(capsys, "prune=[0, 0, 1]: 3 thresholds for an order-2 model")
    assert main(["build-lm", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.arpa")]) == 2
    _one_line_error(capsys, "missing.txt")
    assert main(["build-lm", str(work["text"]), "--order", "0", "--out", str(tmp_path / "x.arpa")]) == 2
    _one_line_error(capsys, "--order 0")


@pytest.mark.parametrize("options, message", [
    (["--nbest", "0"], "--nbest 0: must be >= 1"),  # transcribe only
    (["--nbest", "3"], "--nbest 3: lists the hypotheses of a beam search in --json output; add --json and one of"),
    (["--nbest", "3", "--json"], "--nbest 3: lists the hypotheses of a beam search"),  # greedy: was ignored
    (["--nbest", "3", "--beam-size", "4"], "--nbest 3: lists the hypotheses of a beam search"),  # no --json
    (["--nbest", "5", "--beam-size", "4", "--json"], "--nbest 5: must be at most the beam size (4)"),  # gave 4 unsaid
    (["--beam-size", "-1"], "--beam-size -1: must be >= 1"),
    (["--beam-threshold", "-1"], "--beam-threshold -1: must be positive"),  # refused with greedy decoding too
    (["--beam-threshold", "nan"], "--beam-threshold nan: must be positive"),
    (["--lm-weight", "nan"], "--lm-weight nan: must be a finite number"),
    (["--lm-weight", "inf"], "--lm-weight inf: must be a finite number"),
    (["--word-score", "nan"], "--word-score nan: must be a finite number"),
    (["--word-score=-inf"], "--word-score -inf: must be a finite number"),
    (["--jobs", "-1"], "--jobs -1: must be >= 0 (0: one per CPU core)"),  # evaluate, tune-lm
    (["--batch-s", "0"], "--batch-s 0: must be a positive number of seconds"),  # transcribe, evaluate, tune-lm
    (["--batch-s", "nan"], "--batch-s nan: must be a positive number of seconds"),
])
def test_bad_decoding_options_are_refused_before_the_model_is_read(work, arpa, capsys, tmp_path, options, message):
    missing = str(tmp_path / "none.pt")  # never opened: the options are checked first
    audio, manifest = work["entries"][0]["audio_filepath"], str(work["manifest"])
    commands = {"transcribe": [missing, audio], "stream": [missing, audio],
                "evaluate": [missing, manifest, "--out", str(tmp_path / "out")],
                "tune-lm": [missing, manifest, "--lm", str(arpa)]}
    option = options[0].split("=")[0]
    takes = {"--nbest": ["transcribe"], "--jobs": ["evaluate", "tune-lm"], "--batch-s": ["transcribe", "evaluate", "tune-lm"],
             "--lm-weight": ["transcribe", "stream", "evaluate"], "--word-score": ["transcribe", "stream", "evaluate"]}
    for command in takes.get(option, list(commands)):
        assert main([command, *commands[command], *options]) == 2, command
        _one_line_error(capsys, message)
    assert not (tmp_path / "out").exists()


def test_tune_lm_warns_when_the_lexicon_misses_the_dev_words(work, arpa, capsys, tmp_path):
    """An LM of other words gives 100 % WER at every weight: tune-lm says why."""
    other = tmp_path / "other.txt"
    other.write_text("zebra quokka\nquokka zebra wombat\n" * 20)
    foreign = tmp_path / "foreign.arpa"
    assert main(["build-lm", str(other), "--order", "2", "--out", str(foreign), "--backend", "python"]) == 0
    tune = ["tune-lm", str(work["model"]), str(work["manifest"]), "--lm-weights", "1", "--word-scores", "0",
            "--beam-size", "4"]
    capsys.readouterr()
    assert main([*tune, "--lm", str(foreign)]) == 0
    err = capsys.readouterr().err
    assert f"asr: warning: {foreign}: the lexicon holds 0.0 % of the dev set's 28 running words" in err
    assert main([*tune, "--lm", str(arpa)]) == 0  # the chapters' own text: no warning
    assert "warning" not in capsys.readouterr().err


def test_upper_case_lexicon_words_score_as_the_references(work, capsys, tmp_path):
    """A lexicon of upper-case words (as OpenSLR's LibriSpeech lexicon and LMs are) makes the beam
    search write ZERO; scoring normalizes hypotheses as it does references, so WER and CER are those
    of the same lexicon in lower case (each such word, each letter, counted as an error before)."""
    words = sorted({w for e in work["entries"] for w in normalize_text(e["text"]).split()})
    wers = []
    for name, case in (("lower", str.lower), ("upper", str.upper)):
        lexicon = tmp_path / f"{name}.txt"
        lexicon.write_text("".join(f"{case(w)} {' '.join(w)}\n" for w in words))
        capsys.readouterr()
        assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / name),
                     "--lexicon", str(lexicon), "--beam-size", "20"]) == 0
        out = capsys.readouterr().out
        wers.append([float(re.search(rf"^{m} ([\d.]+) %", out, flags=re.M)[1]) for m in ("WER", "CER")])
        if name == "upper":
            hyps = (tmp_path / name / "hyps.txt").read_text()
            assert hyps.split() and any(w.isupper() for w in hyps.split()), hyps  # the decoder's own text is kept
    assert wers[0] == wers[1] and wers[0][1] < 100, wers  # CER: the near-untrained model gets letters right


def test_tune_lm_grids_that_would_not_end_are_refused(work, arpa, capsys):
    common = ["tune-lm", str(work["model"]), str(work["manifest"]), "--lm", str(arpa)]
    assert main([*common, "--lm-weights", "0:1e9:1e-9"]) == 2  # ran for ever
    _one_line_error(capsys, "grid '0:1e9:1e-9': 1,000,000,000,000,000,001 values; at most 1,000 are tried")
    assert main([*common, "--word-scores", "0:inf:1"]) == 2  # OverflowError
    _one_line_error(capsys, "--word-scores: grid '0:inf:1'", "finite")
    assert main([*common, "--word-scores", "3:-1:1"]) == 2  # was "tune-lm: the grids must not be empty": which?
    _one_line_error(capsys, "--word-scores: grid '3:-1:1': no values (the start is above the stop)")
    assert main([*common, "--lm-weights", "0:99:1", "--word-scores", "0:99:1"]) == 2  # 10,000 decodings of the set
    _one_line_error(capsys, "--lm-weights 0:99:1 --word-scores 0:99:1: 10,000 pairs; at most 1,000 are tried")
    assert main([*common, "--refine", "1000000000"]) == 2  # steps below float resolution, for ever
    _one_line_error(capsys, "--refine 1000000000: must be from 0 to 20")


def test_build_lm_refuses_an_order_kenlm_cannot_load(work, capsys, tmp_path):
    out = tmp_path / "lm.arpa"
    assert main(["build-lm", str(work["text"]), "--order", "99", "--out", str(out)]) == 2
    _one_line_error(capsys, "--order 99: must be from 1 to 6 (the highest order KenLM loads)")
    assert not out.exists()


def test_tune_lm_refuses_a_cache_path_before_the_model_is_read(capsys, tmp_path):
    """--cache below a file was refused only when the cache was written, after the whole dev set had
    run through the model. The model, LM and manifest named here are missing: the cache comes first."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused = {notes / "lp.pt": f"{notes}: exists and is not a folder; nothing written at {notes / 'lp.pt'}",
               notes / "sub" / "lp.pt": f"{notes}: exists and is not a folder; nothing written at",
               tmp_path: f"{tmp_path}: exists and is not a plain file; not overwritten"}
    if Path("/proc/self").is_dir():  # a folder where the system makes no file
        refused[Path("/proc/lp.pt")] = "/proc: cannot write files there (No such file or directory); nothing written"
    for cache, error in refused.items():
        assert main(["tune-lm", str(tmp_path / "none.pt"), str(tmp_path / "none.jsonl"), "--lm", str(tmp_path / "none.arpa"),
                     "--lm-weights", "1", "--word-scores", "0", "--cache", str(cache)]) == 2
        assert capsys.readouterr().err.startswith(f"asr: error: {error}"), cache
    assert notes.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_outputs_never_replace_what_the_user_had(work, arpa, capsys, tmp_path):
    model, manifest = str(work["model"]), str(work["manifest"])
    victim = tmp_path / "victim.pt"  # a checkpoint given as the log-prob cache by mistake
    victim.write_bytes(work["model"].read_bytes())
    assert main(["tune-lm", model, manifest, "--lm", str(arpa), "--lm-weights", "1", "--word-scores", "0",
                 "--cache", str(victim)]) == 2
    _one_line_error(capsys, "victim.pt: exists and is not a log-prob cache of asr tune-lm; not overwritten")
    assert victim.read_bytes() == work["model"].read_bytes()

    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    link = tmp_path / "link.json"
    link.symlink_to(notes)
    for target in (notes, link):  # another JSON file, directly or through a link
        assert main(["evaluate", model, manifest, "--out", str(tmp_path / "ev"), "--results-json", str(target)]) == 2
        _one_line_error(capsys, "notes.json: exists and is not a results file of asr evaluate")
    assert notes.read_text() == '{"mine": 1}\n' and link.is_symlink()
    assert main(["evaluate", model, manifest, "--out", str(tmp_path / "ev"), "--results-json", str(tmp_path)]) == 2
    _one_line_error(capsys, "exists and is not a plain file")
    result = tmp_path / "result.json"
    for _ in range(2):  # a results file is replaced by the next evaluation
        assert main(["evaluate", model, manifest, "--out", str(tmp_path / "ev"), "--results-json", str(result)]) == 0
    assert json.loads(result.read_text())["num_utterances"] == len(UTTS)
    capsys.readouterr()

    text = work["text"].read_bytes()
    assert main(["build-lm", str(work["text"]), "--out", str(work["text"])]) == 2  # its own input
    _one_line_error(capsys, "exists and is not an n-gram LM")
    assert work["text"].read_bytes() == text
    again = tmp_path / "again.arpa"
    again.write_bytes(arpa.read_bytes())
    assert main(["build-lm", str(work["text"]), "--order", "2", "--out", str(again)]) == 0  # an LM is replaced
    assert "ngram 3=" not in again.read_text() and not list(tmp_path.glob(".again.arpa*"))


def test_best_path_beam_without_lm_gives_greedy_text(work, tmp_path):
    """--best-path scores hypotheses by their best CTC alignment, so without an LM the beam finds
    greedy decoding's text; the results file says how it decoded."""
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "greedy")]) == 0
    result = tmp_path / "best.json"
    assert main(["evaluate", str(work["model"]), str(work["manifest"]), "--out", str(tmp_path / "best"),
                 "--beam-size", "20", "--best-path", "--results-json", str(result)]) == 0
    greedy, best = ([" ".join(line.split()) for line in (tmp_path / d / "hyps.txt").read_text().splitlines()]
                    for d in ("greedy", "best"))
    assert best == greedy and len(best) == len(UTTS)
    assert json.loads(result.read_text())["decoding"] == "beam 20 best-path"


def test_frame_shift_is_the_hop_in_whole_samples():
    """At 22.05 kHz a 10 ms hop is 220 samples (9.977 ms): word times drifted 0.14 s a minute when
    the nominal 10 ms was used."""
    import torch

    from asr.features import FeatureConfig, FeatureExtractor
    from asr.model import DeepSpeech2, load_preset
    from asr.recognizer import Recognizer
    from asr.tokenizer import CharTokenizer

    features = FeatureExtractor(FeatureConfig(kind="fbank", sample_rate=22050, n_mels=40))
    model = DeepSpeech2(load_preset("tiny"), num_features=features.num_features, vocab_size=29)
    recognizer = Recognizer(features=features, model=model, tokenizer=CharTokenizer())
    assert recognizer.frame_shift_s == pytest.approx(2 * 220 / 22050)
    samples = 60 * 22050
    frames = int(model.output_lengths(torch.tensor([1 + (samples - features.cfg.win_length) // 220]))[0])
    assert frames * recognizer.frame_shift_s == pytest.approx(60.0, abs=2 * 220 / 22050)

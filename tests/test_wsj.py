"""asr.datasets.wsj on a synthetic WSJ0/WSJ1 disc tree: sets, transcripts, problems, CLI."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.cli import main
from asr.datasets.wsj import WsjError, find_discs, normalize_wsj, prepare_wsj, read_set
from asr.manifest import read_manifest

SHORTEN = "sphere/123_1pcle_shn.sph"  # pcm,embedded-shorten-v2.00, 20 kHz, 37120 frames
REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="latin-1")
    else:
        path.write_bytes(content)
    return path


def _nist(path: Path, num_frames: int) -> Path:
    """An uncompressed 16 kHz SPHERE file (libsndfile writes sample_count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = (0.1 * np.sin(np.arange(num_frames) / 5)).astype(np.float32)
    sf.write(path, tone, 16000, format="NIST", subtype="PCM_16")
    return path


@pytest.fixture()
def discs(tmp_path: Path, shared_data: Path) -> tuple[Path, Path]:
    """WSJ0 and WSJ1 disc folders as distributed: WSJ0 keeps .dot files under transcrp/dots,
    WSJ1 beside the audio; disc 13-16.1 is in upper case."""
    shorten = (shared_data / SHORTEN).read_bytes()
    w0, w1 = tmp_path / "LDC93S6B", tmp_path / "LDC94S13B"
    _write(w0 / "11-13.1/wsj0/doc/indices/train/tr_s_wv1.ndx",
           ";; File: tr_s_wv1.ndx, updated 04/26/94\n;;\n"
           "11_1_1:wsj0/si_tr_s/01i/01ic0201.wv1\n"
           "11_1_1:wsj0/si_tr_s/01i/01ic0202.wv1\n"
           "11_2_1:wsj0/si_tr_s/401/401c0201.wv1\n"
           "11_2_1:wsj0/si_tr_s/02c/02cc0201.wv1\n"
           "11_1_1:wsj0/si_tr_s/01i/01ic0203.wv1\n"
           "this is not an index line\n")
    _write(w0 / "11-13.1/wsj0/doc/indices/test/nvp/si_et_20.ndx",
           ";; Nov'92 20k NVP\n11_14_1:wsj0/si_et_20/440/440c0201\n11_14_1:wsj0/si_et_20/440/440c0202\n")
    _write(w0 / "11-1.1/wsj0/si_tr_s/01i/01ic0201.wv1", shorten)
    _nist(w0 / "11-1.1/wsj0/si_tr_s/01i/01ic0202.wv1", 8000)
    _nist(w0 / "11-1.1/wsj0/si_tr_s/01i/01ic0202.wv2", 8000)
    _nist(w0 / "11-2.1/wsj0/si_tr_s/401/401c0201.wv1", 8000)
    _nist(w0 / "11-2.1/WSJ0/SI_TR_S/02C/02CC0201.WV1", 12000)
    _write(w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/01i/01ic0200.dot",
           "Its capital stock \\,COMMA I\\. B\\. M\\. said [loud_breath] (01ic0201)\n"
           "\\\"DOUBLE-QUOTE We\\'re *sellin'* tha- <uh> shares \\.PERIOD (01ic0202)\n"
           "a line without its utterance id\n"
           "Never recorded (01ic0203)\n")
    _write(w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/02c/02cc0200.dot", "[door_slam] (02cc0201)\n")
    _write(w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/401/401c0200.dot", "Left out (401c0201)\n")
    _nist(w0 / "11-14.1/wsj0/si_et_20/440/440c0201.wv1", 24000)
    _write(w0 / "11-14.1/wsj0/transcrp/dots/si_et_20/440/440c0200.dot",
           "The index rose one point two percent (440c0201)\n")
    _write(w1 / "13-34.1/wsj1/doc/indices/si_tr_s.ndx", "; WSJ1 SI-284 part\n13_2_1: wsj1/si_tr_s/46a/46ac0201.wv1\n")
    _write(w1 / "13-34.1/wsj1/doc/indices/h1_p0.ndx", "13_16_1:wsj1/si_dt_20/4k0/4k0c0301.wv1\n")
    _write(w1 / "13-32.1/wsj1/doc/indices/wsj1/eval/h1_p0.ndx", "13_32_1:wsj1/si_et_h1/wsj64k/4oac0201.wv1\n")
    _nist(w1 / "13-2.1/wsj1/si_tr_s/46a/46ac0201.wv1", 16000)
    _write(w1 / "13-2.1/wsj1/si_tr_s/46a/46ac0200.dot", "Stocks fell [/phone_ring] sharply (46ac0201)\n")
    _nist(w1 / "13-16.1/WSJ1/SI_DT_20/4K0/4K0C0301.WV1", 4000)
    _write(w1 / "13-16.1/WSJ1/SI_DT_20/4K0/4K0C0300.DOT", "Dealers said ~ (4k0c0301)\n")
    _nist(w1 / "13-33.1/wsj1/si_et_h1/wsj64k/4oac0201.wv1", 6000)
    _write(w1 / "13-33.1/wsj1/si_et_h1/wsj64k/4oac0200.dot", "Bond prices rose (4oac0201)\n")
    return w0, w1


def _ids(manifest: Path) -> list[str]:
    return [Path(u.audio_filepath).stem.lower() for u in read_manifest(manifest)]


def test_sets_and_transcripts(discs, tmp_path):
    w0, w1 = discs
    reports = {r.name: r for r in prepare_wsj([w0], [w1], tmp_path / "out")}
    assert list(reports) == ["train_si284", "train_si84", "test_dev93", "test_eval92", "test_eval93"]
    assert _ids(reports["train_si84"].manifest) == ["01ic0201", "01ic0202"]  # 02cc0201: noise only
    assert _ids(reports["train_si284"].manifest) == ["01ic0201", "01ic0202", "46ac0201"]
    assert _ids(reports["test_eval92"].manifest) == ["440c0201"]
    assert _ids(reports["test_dev93"].manifest) == ["4k0c0301"]  # disc 13-16.1 in upper case
    assert _ids(reports["test_eval93"].manifest) == ["4oac0201"]  # index says disc 13_32_1
    utts = {Path(u.audio_filepath).stem.lower(): u for u in read_manifest(reports["train_si284"].manifest)}
    assert utts["01ic0201"].text == "its capital stock comma i b m said"
    assert utts["01ic0202"].text == "double quote we're sellin uh shares period"
    assert utts["46ac0201"].text == "stocks fell sharply"
    assert utts["01ic0201"].duration == pytest.approx(37120 / 20000)  # shorten SPHERE header
    assert utts["46ac0201"].duration == pytest.approx(1.0) and utts["46ac0201"].speaker == "46a"
    assert len(load_audio(utts["01ic0201"].audio_filepath)) == 37120 * 16000 // 20000
    [eval92] = read_manifest(reports["test_eval92"].manifest)
    assert eval92.text == "the index rose one point two percent"
    assert reports["train_si84"].num_utterances == 2 and reports["train_si84"].expected == 7138
    assert "(a complete copy gives 7138)" in reports["train_si84"].summary()


def test_problems_name_file_and_line(discs, tmp_path):
    w0, w1 = discs
    utts, problems, skipped = read_set(find_discs([w0, w1]), "train_si84")
    ndx = w0 / "11-13.1/wsj0/doc/indices/train/tr_s_wv1.ndx"
    dot = w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/01i/01ic0200.dot"
    assert problems == [
        f"{ndx}:8: cannot parse index line 'this is not an index line'",
        f"{dot}:3: malformed transcription line (expected 'text (utterance id)'): "
        "'a line without its utterance id'",
        f"{ndx}:6: 02cc0201: empty transcript after normalization ('[door_slam]')",
        f"{ndx}:7: audio 11_1_1:wsj0/si_tr_s/01i/01ic0203.wv1 not found",
    ]
    assert skipped == 3 and [Path(u.audio_filepath).stem for u in utts] == ["01ic0201", "01ic0202"]


def test_missing_transcript_and_unreadable_audio(discs, tmp_path):
    w0, w1 = discs
    (w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/01i/01ic0200.dot").write_text("Only one (01ic0201)\n")
    (w0 / "11-1.1/wsj0/si_tr_s/01i/01ic0201.wv1").write_bytes(b"NIST_1A\n   1024\nno end\n")
    utts, problems, skipped = read_set(find_discs([w0, w1]), "train_si84")
    ndx = w0 / "11-13.1/wsj0/doc/indices/train/tr_s_wv1.ndx"
    dot = w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/01i/01ic0200.dot"
    assert f"{ndx}:3: {w0 / '11-1.1/wsj0/si_tr_s/01i/01ic0201.wv1'}: corrupt or truncated NIST SPHERE " \
           "header: no end_head in the first 23 bytes" in problems
    assert f"{ndx}:4: no transcription for 01ic0202 in {dot}" in problems
    assert utts == []


def test_a_transcription_file_that_cannot_be_read_skips_its_session_not_the_set(discs, tmp_path):
    """A .dot file that cannot be read (here a link to nothing, as a merged copy may hold) is a
    problem, and its session's utterances are skipped; the rest of the set is prepared (the whole
    run used to stop on it)."""
    w0, w1 = discs
    dot = w0 / "11-4.1/wsj0/transcrp/dots/si_tr_s/01i/01ic0200.dot"
    dot.unlink()
    dot.symlink_to(tmp_path / "elsewhere.dot")
    reports = {r.name: r for r in prepare_wsj([w0], [w1], tmp_path / "out", sets=["train_si284"])}
    assert _ids(reports["train_si284"].manifest) == ["46ac0201"]
    problems = (tmp_path / "out/train_si284.problems.txt").read_text().splitlines()
    assert f"{dot}: cannot be read (No such file or directory)" in problems
    assert sum("no transcription for 01ic020" in p for p in problems) == 2


def test_verify_decodes_and_checks_checksums(discs, tmp_path):
    w0, w1 = discs
    audio = w0 / "11-1.1/wsj0/si_tr_s/01i/01ic0201.wv1"
    damaged = bytearray(audio.read_bytes())
    damaged[5000] ^= 0x10
    audio.write_bytes(bytes(damaged))
    index = find_discs([w0, w1])
    assert "01ic0201" in [Path(u.audio_filepath).stem for u in read_set(index, "train_si84")[0]]
    utts, problems, _ = read_set(index, "train_si84", verify=True)
    assert [p for p in problems if "checksum" in p] == [
        f"{w0 / '11-13.1/wsj0/doc/indices/train/tr_s_wv1.ndx'}:3: {audio}: sample_checksum mismatch: "
        "header declares 55857, the samples sum to 32254"]


def test_second_microphone(discs, tmp_path):
    w0, w1 = discs
    utts, problems, _ = read_set(find_discs([w0]), "train_si84", mic=2)
    assert [Path(u.audio_filepath).name for u in utts] == ["01ic0202.wv2"]


def test_merged_copy_without_disc_folders(discs, tmp_path):
    """A copy whose wsj0/ folder merges the discs: index lines are found by path alone."""
    w0, _ = discs
    merged = tmp_path / "merged"
    for path in sorted(w0.rglob("*")):
        if path.is_file():
            below = path.relative_to(w0).parts[1:]  # drop the disc folder
            _write(merged.joinpath(*below), path.read_bytes())
    utts, _, _ = read_set(find_discs([merged]), "train_si84")
    assert [Path(u.audio_filepath).stem.lower() for u in utts] == ["01ic0201", "01ic0202"]  # 02cc0201: noise only


def test_errors(tmp_path, discs):
    w0, w1 = discs
    (tmp_path / "empty").mkdir()
    with pytest.raises(WsjError, match="no WSJ disc found"):
        find_discs([tmp_path / "empty"])
    with pytest.raises(WsjError, match="not a folder"):
        find_discs([tmp_path / "nowhere"])
    with pytest.raises(WsjError, match=r"test_dev93: index file 13-34\.1/wsj1/doc/indices/h1_p0\.ndx not found"):
        prepare_wsj([w0], [], tmp_path / "o", sets=["test_dev93"])
    with pytest.raises(WsjError, match="no WSJ folder given"):
        prepare_wsj([], [], tmp_path / "o")
    with pytest.raises(WsjError, match="unknown WSJ set"):
        prepare_wsj([w0], [w1], tmp_path / "o", sets=["test_eval94"])


def test_cli_prepare_wsj(discs, tmp_path, capsys):
    w0, w1 = discs
    out = tmp_path / "manifests"
    args = ["prepare", "wsj", "--wsj0", str(w0), "--wsj1", str(w1), "--out", str(out),
            "--sets", "test_eval92,train_si84"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"test_eval92: 1 utterances (a complete copy gives 333), 7 words, 0.00 h, 1 skipped -> {out}" in printed
    assert f"4 problems, listed in {out / 'train_si84.problems.txt'}" in printed
    summary = json.loads((out / "test_eval92.summary.json").read_text())
    assert summary["num_utterances"] == 1 and summary["expected"] == 333
    assert main(args) == 0 and "(already prepared)" in capsys.readouterr().out
    assert main(["prepare", "wsj", "--wsj0", str(w0), "--out", str(out), "--sets", "test_dev93"]) == 2
    assert "asr: error: test_dev93: index file 13-34.1/" in capsys.readouterr().err


@pytest.mark.parametrize(("dot", "expected"), [
    ("[<door_slam] Shares [phone_ring/] fell [/phone_ring] [door_slam>]", "shares fell"),
    ("\\'SINGLE-QUOTE \\(LEFT-PAREN \\)RIGHT-PAREN \\;SEMI-COLON \\?QUESTION-MARK", "single quote left paren "
     "right paren semi colon question mark"),
    ("up \\%PERCENT \\.POINT five \\COMMA", "up percent point five comma"),
    ("Mr\\. Smith\\'s company\\'s 1990s", "mr smith's company's one thousand nine hundred nineties"),
    ("So: !very (th)e- exp- -ing *word* <the> ~ .", "so very word the"),
    ("[loud_breath] ~", ""),
])
def test_normalize_wsj(dot, expected):
    assert normalize_wsj(dot) == expected
    assert normalize_wsj(expected) == expected  # normalized text is a fixed point


# ------------------------------------------------------------------------------ recipe smoke test
LDC_STYLE_ARPA = """Language model: space-separated, upper case, text before \\data\\ (as on disc 13-32.1)
\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0 </s>
-99 <s> -0.5
-0.7 STOCKS -0.3
-0.7 FELL -0.3
-0.8 SHARPLY
-0.9 DON'T

\\2-grams:
-0.2 <s> STOCKS
-0.2 STOCKS FELL

\\end\\
"""


@pytest.mark.slow
def test_wsj_recipe_smoke(discs, tmp_path):
    """All six stages of recipes/wsj/run.sh on CPU on the synthetic discs, with an LDC-style LM."""
    if shutil.which("asr") is None:
        pytest.fail("the `asr` console script is not on PATH (pip install -e .)")
    w0, w1 = discs
    _write(w1 / "13-32.1/wsj1/doc/lng_modl/base_lm/TCB20ONP.Z", gzip.compress(LDC_STYLE_ARPA.encode()))
    data, exp = tmp_path / "data", tmp_path / "exp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = ["bash", str(REPO / "recipes/wsj/run.sh"), "--wsj0", str(w0), "--wsj1", str(w1), "--ngpu", "0",
           "--data", str(data), "--exp", str(exp), "preset=tiny", "epochs=1", "max_steps=2", "threads=1",
           "data.num_workers=0", "features.kind=fbank", "data.max_batch_s=60"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    arpa = (data / "lm/tcb20onp.arpa").read_text().splitlines()
    assert arpa[0] == "\\data\\" and "-0.9\tdon't" in arpa and "-0.2\tstocks fell" in arpa
    for name in ("test_eval92", "test_eval93", "test_eval92_tcb20onp", "test_eval93_tcb20onp"):
        result = json.loads((exp / "decode" / name / "result.json").read_text())
        assert result["test_set"] == f"wsj-{name[5:11]}" and result["num_utterances"] == 1
        assert result["train_data"] == "WSJ train_si284 (3 utterances, 0.0 h)"
        assert ("tcb20onp" in result["decoding"]) == name.endswith("tcb20onp")
    table = (exp / "RESULTS.md").read_text()
    assert table.count("| read | WSJ eval'92 | 4.94 | 3.60 | 5.03 |") == 2
    assert table.count("| read | WSJ eval'93 | 6.94 | 4.98 | 8.08 |") == 2
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)  # all done: skips
    assert again.returncode == 0 and "model.pt exists" in again.stdout and "already scored" in again.stdout


def test_wsj_recipe_refuses_missing_discs_and_inputs_in_one_line(tmp_path):
    """A --wsj0 that is not there is refused before any stage (was asr's error inside stage 1);
    --lm si284 without the training manifest is one line (was a Python traceback); an LDC LM file
    cut short is one line, and leaves no .tmp ARPA file behind."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    base = ["bash", str(REPO / "recipes/wsj/run.sh"), "--data", "data", "--exp", "exp", "--ngpu", "0"]
    (tmp_path / "wsj1").mkdir()
    cases = [(["--wsj0", "nope", "--wsj1", "wsj1"], 2, f"run.sh: --wsj0 {tmp_path / 'nope'}: no such folder\n"),
             (["--wsj1", "wsj1"], 2, "run.sh: stage 1 needs --wsj0 DIR and --wsj1 DIR\n"),
             (["--lm", "si284", "--stage", "2", "--stop-stage", "2"], 1,
              f"run.sh: stage 2: {tmp_path / 'data/manifests/train_si284.jsonl'} missing or empty: run stage 1 first\n")]
    for args, status, message in cases:
        run = subprocess.run(base + args, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert (run.returncode, run.stderr) == (status, message), run.stderr
    assert not (tmp_path / "data").exists()
    damaged = _write(tmp_path / "wsj1/13-32.1/wsj1/doc/lng_modl/base_lm/tcb20onp.z",
                     gzip.compress(LDC_STYLE_ARPA.encode())[:-20])  # cut short: gunzip fails at its end
    run = subprocess.run(base + ["--wsj1", "wsj1", "--stage", "2", "--stop-stage", "2"], capture_output=True, text=True,
                         env=env, timeout=60, cwd=tmp_path)
    assert (run.returncode, run.stderr) == (1, f"run.sh: stage 2: {damaged}: not whole gzip data (gunzip -t tells why)\n")
    assert list((tmp_path / "data" / "lm").iterdir()) == []  # no ARPA file a rerun would take as whole


def test_wsj_recipe_stage_5_needs_the_best_pair_of_tune_lm(tmp_path):
    """When `asr tune-lm` prints no 'best lm_weight ... word_score ...' line (here a stand-in
    `asr` on PATH that prints nothing), stage 5 stops with a line naming the log; it used to stop
    silently on an empty weights file, which then stayed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "asr").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "asr").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    run = subprocess.run(["bash", str(REPO / "recipes/wsj/run.sh"), "--data", "data", "--exp", "exp", "--ngpu", "0",
                          "--lm", "si284", "--stage", "5", "--stop-stage", "5"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    log = tmp_path / "exp/log/tune-si284.log"
    assert (run.returncode, run.stderr) == (1, f"run.sh: stage 5: no 'best lm_weight ... word_score ...' line in {log}\n")
    assert not (tmp_path / "exp/decode/lm-weights-si284.txt").exists()

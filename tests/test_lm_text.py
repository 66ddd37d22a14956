"""LM text: overlap with dev transcripts (tools/lm_overlap.py) and book preparation (tools/lm_text.py)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import interrupt_reading

from asr.lm_overlap import LMTextError, lm_overlap, read_lm_lines
from asr.lm_text import book_sentences, prepare_lm_text, strip_gutenberg
from asr.manifest import read_manifest
from asr.text import normalize_text

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str):
    """A script of tools/ as a module (its ``main(argv)`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# The output of Debian's `bible Gen1:1-Gen1:4 Jude1:24-Jude1:25` (bible-kjv 4.38), verbatim.
KJV = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of
the deep. And the Spirit of God moved upon the face of the waters.
  3 And God said, Let there be light: and there was light.
  4 And God saw the light, that it was good: and God divided the light from the
darkness.

Jude 1

  24 Now unto him that is able to keep you from falling, and to present you
faultless before the presence of his glory with exceeding joy,
  25 To the only wise God our Saviour, be glory and majesty, dominion and
power, both now and ever. Amen.
"""


@pytest.fixture(scope="module")
def dev(shared_data: Path, tmp_path_factory) -> Path:
    """A manifest of all dev-4spk transcripts (upper case, as LibriSpeech ships them)."""
    lines = []
    for trans in sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            flac = trans.parent / f"{uid}.flac"
            lines.append(json.dumps({"audio_filepath": str(flac), "duration": 1.0, "text": text}))
    path = tmp_path_factory.mktemp("lm") / "dev-4spk.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _long_dev_utterance(dev: Path):
    return next(u for u in read_manifest(dev) if len(u.text.split()) >= 20)


def test_bible_output_is_parsed_into_normalized_sentences():
    sentences = list(book_sentences(KJV, "bible"))
    assert sentences[0] == "in the beginning god created the heaven and the earth"
    assert "and the spirit of god moved upon the face of the waters" in sentences  # wrapped verse, 2nd sentence
    assert sentences[-1] == "amen"
    assert not any("genesis" in s or "jude" in s for s in sentences)  # headings are not text


def test_gutenberg_header_and_licence_are_stripped():
    text = ("The Project Gutenberg eBook of X\nlicence words\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
            "Chapter one.\n\nIt was a dark night. The end!\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nmore licence")
    assert strip_gutenberg(text).startswith("Chapter one.")
    assert list(book_sentences(text, "plain")) == ["chapter one", "it was a dark night", "the end"]


def test_overlap_finds_a_planted_dev_sentence(dev, tmp_path, capsys):
    planted = _long_dev_utterance(dev)
    lm = tmp_path / "lm.txt"
    lm.write_text("\n".join(list(book_sentences(KJV, "bible")) + [planted.text.title() + "."]) + "\n")
    utts = read_manifest(dev)
    report = lm_overlap(read_lm_lines([lm]), [u.text for u in utts], ids=[Path(u.audio_filepath).stem for u in utts])
    assert report.exact == [(Path(planted.audio_filepath).stem, normalize_text(planted.text))]
    n = len(planted.text.split())
    assert report.ngrams_found == n - 7  # every 8-gram of the planted sentence, nothing else
    assert 0 < report.ngram_rate < 0.05 and not report.clean
    assert "OVERLAP" in report.summary()

    capsys.readouterr()
    assert _tool("lm_overlap").main([str(lm), "--manifest", str(dev)]) == 1  # 1: overlap found
    out = capsys.readouterr().out
    assert "exact sentence matches: 1 of 496" in out and Path(planted.audio_filepath).stem in out


def test_clean_text_and_prepare_excludes_dev_text(dev, tmp_path, capsys):
    planted = _long_dev_utterance(dev)
    book = tmp_path / "kjv.txt"
    inside = "  26 " + " ".join(planted.text.lower().split()[:12]) + " and so on for ever.\n"  # shares 8-grams
    book.write_text(KJV + "\nJude 1\n\n" + inside + "  27 " + planted.text.lower() + "\n")
    utts = read_manifest(dev)
    texts = [u.text for u in utts]

    exact_only = prepare_lm_text([book], tmp_path / "exact.txt", fmt="bible", exclude=texts)
    assert exact_only.dropped_exact == 1 and exact_only.dropped_ngram == 0
    assert lm_overlap(read_lm_lines([exact_only.path]), texts).exact == []
    partial = lm_overlap(read_lm_lines([exact_only.path]), texts)
    assert not partial.clean and [p[1:] for p in partial.partial] == [(5, len(planted.text.split()) - 7)]

    strict = prepare_lm_text([book], tmp_path / "strict.txt", fmt="bible", exclude=texts, exclude_order=8)
    assert strict.dropped_exact == 1 and strict.dropped_ngram == 1
    report = lm_overlap(read_lm_lines([strict.path]), texts, order=8)
    assert report.clean and report.ngram_rate == 0.0 and report.lm_sentences == strict.written

    capsys.readouterr()
    assert _tool("lm_overlap").main([str(strict.path), "--manifest", str(dev)]) == 0
    assert "verdict: clean" in capsys.readouterr().out


def test_lm_text_tool_skips_existing_output(tmp_path, capsys):
    book = tmp_path / "book.txt"
    book.write_text("It was a dark and stormy night. The rain fell in torrents.\n")
    out = tmp_path / "out.txt"
    tool = _tool("lm_text")
    assert tool.main([str(book), "--out", str(out)]) == 0
    assert out.read_text() == "it was a dark and stormy night\nthe rain fell in torrents\n"
    out.write_text("kept\n")
    capsys.readouterr()
    assert tool.main([str(book), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out and out.read_text() == "kept\n"
    assert tool.main([str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o2.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.txt" in err[0]


# Two entries written for this test in the layout of Debian's dict-gcide dictd file: headword and
# pronunciation, an etymology over two lines, special letters ([-e]), numbered senses, source
# lines, an indented quotation with its attribution, and one byte that is not UTF-8 (cp1252 quote).
GCIDE = (
    "00-database-short\n   A test dictionary\n\n"
    'Lantern \\Lan"tern\\ (l[a^]n"t[~e]rn), n. [F. lanterne, fr. L.\n'
    "   lanterna.]\n"
    "   1. Something inclosing a light, and protecting it from wind;\n"
    "      a lamp carried by a watchman. [Obs.]\n"
    "      [1913 Webster]\n\n"
    "            The keeper held his lantern high above the gate. --Dryden.\n"
    "      [1913 Webster]\n\n"
    'Lanyard \\Lan"yard\\, n. (Naut.)\n'
    "   A short rope used for making fast; a cord with a \u2019hook\u2019.\n"
    "   [1913 Webster]\n"
)


def test_gcide_dictionary_gives_definitions_and_quotations(dev, tmp_path):
    book = tmp_path / "gcide.dict.dz"
    planted = _long_dev_utterance(dev)
    book.write_bytes(gzip.compress(GCIDE.encode("cp1252") + f"\n            {planted.text}. --Test.\n".encode()))
    report = prepare_lm_text([book], tmp_path / "gcide.txt", fmt="gcide", exclude=[u.text for u in read_manifest(dev)])
    lines = (tmp_path / "gcide.txt").read_text().splitlines()
    assert lines == [
        "something inclosing a light and protecting it from wind",
        "a lamp carried by a watchman",
        "the keeper held his lantern high above the gate",
        "a short rope used for making fast",
        "a cord with a hook",
    ]
    assert report.dropped_exact == 1  # the planted dev sentence, attribution removed
    with pytest.raises(LMTextError, match="plain.txt: cannot read"):  # other formats stay strict UTF-8
        (tmp_path / "plain.txt").write_bytes(b"caf\xe9 au lait.\n")
        prepare_lm_text([tmp_path / "plain.txt"], tmp_path / "plain.out")


def test_manifest_transcripts_become_lm_sentences_and_a_bad_line_is_named(dev, tmp_path, capsys):
    utts = read_manifest(dev)
    train = tmp_path / "train.jsonl"  # a "training" manifest: 40 dev lines, one of them a dev sentence to keep out
    train.write_text("".join(line + "\n" for line in dev.read_text().splitlines()[:40]))
    held_out = utts[3].text
    tool = _tool("lm_text")
    dev_only = tmp_path / "held-out.jsonl"
    dev_only.write_text(json.dumps({"audio_filepath": "x.flac", "duration": 1.0, "text": held_out}) + "\n")
    out = tmp_path / "train.sentences.txt"
    assert tool.main([str(train), "--format", "manifest", "--out", str(out), "--min-words", "1",
                      "--exclude-manifest", str(dev_only)]) == 0
    expected = [normalize_text(u.text) for u in utts[:40] if u.text != held_out]
    assert out.read_text().splitlines() == expected and len(expected) == 39

    train.write_text(train.read_text() + "{not json\n")
    capsys.readouterr()
    assert tool.main([str(train), "--format", "manifest", "--out", str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{train}:41:" in err[0] and not (tmp_path / "o.txt").exists()
    with pytest.raises(ValueError, match="unknown book format"):
        list(book_sentences("text", "manifest"))


def test_make_lm_script_builds_a_clean_lm_from_books_and_training_transcripts(dev, tmp_path):
    """recipes/mini_librispeech/make_lm.sh on a small book (no Debian package needed)."""
    lines = dev.read_text().splitlines()
    held_out, train = tmp_path / "dev.jsonl", tmp_path / "train.jsonl"
    held_out.write_text("\n".join(lines[:10]) + "\n")
    train.write_text("\n".join(lines[10:40]) + "\n")
    planted = normalize_text(json.loads(lines[2])["text"])
    book = tmp_path / "story.txt"
    book.write_text("It was a dark and stormy night. The rain fell in torrents.\n\n"
                    f"Then she said {planted} and went home.\n\nThe end of the story came at last.\n")
    out = tmp_path / "lm"
    cmd = ["bash", str(REPO / "recipes/mini_librispeech/make_lm.sh"), "--train", str(train), "--dev", str(held_out),
           "--out", str(out), "--books", "", "--text", f"plain:{book}", "--order", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lm = out / "story_train.2gram.arpa"
    assert run.stdout.strip().splitlines()[-1] == str(lm) and lm.read_text().startswith("\\data\\\n")
    assert "verdict: clean" in (out / "overlap.txt").read_text()
    assert (out / "story.sentences.txt").read_text().splitlines() == [
        "it was a dark and stormy night", "the rain fell in torrents", "the end of the story came at last"]
    assert (out / "train.sentences.txt").read_text().splitlines() == [
        normalize_text(json.loads(line)["text"]) for line in lines[10:40]]
    arpa = lm.read_text()
    unigrams = {line.split("\t")[1] for line in arpa[arpa.index("\\1-grams:"):arpa.index("\\2-grams:")].splitlines()[1:]
                if line}
    texts = (out / "train.sentences.txt").read_text() + (out / "story.sentences.txt").read_text()
    assert unigrams == set(texts.split()) | {"<s>", "</s>", "<unk>"}

    for bad, cause in ((["--books", "poems"], "unknown book poems"), (["--dev", str(tmp_path / "no.jsonl")], "no.jsonl"),
                       (["--text", str(book)], "expected FORMAT:FILE")):
        run = subprocess.run(cmd + bad, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and cause in run.stderr, run.stderr


def test_lm_text_tool_never_replaces_a_file_of_the_users(tmp_path, capsys):
    """--force rewrites an earlier LM text only: a book (an input or not), a folder, a path below a
    file are refused in one line with exit 2, and the file keeps what it held."""
    book = tmp_path / "book.txt"
    book.write_text("It was a dark and stormy night. The rain fell in torrents.\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("My notes. Not an LM text.\n")
    (tmp_path / "folder").mkdir()
    tool = _tool("lm_text")
    for out, cause in [(book, "is also an input"), (notes, "is not an LM text"),
                       (tmp_path / "folder", "not a plain file"), (notes / "out.txt", "is not a folder")]:
        for force in ([], ["--force"]):
            capsys.readouterr()
            assert tool.main([str(book), "--out", str(out), *force]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and cause in err[0] and str(out) in err[0], err
    assert book.read_text().startswith("It was") and notes.read_text() == "My notes. Not an LM text.\n"
    out = tmp_path / "lm" / "out.txt"
    assert tool.main([str(book), "--out", str(out)]) == 0
    assert tool.main([str(book), "--out", str(out), "--force", "--min-words", "5"]) == 0  # its own output: rewritten
    assert out.read_text() == "it was a dark and stormy night\nthe rain fell in torrents\n"


def test_lm_text_and_overlap_refuse_a_manifest_without_transcripts(dev, tmp_path, capsys):
    """A book or an empty file given as the manifest would keep nothing out (lm_text) or report
    'clean' (lm_overlap): both stop with exit 2 naming it; negative counts are refused."""
    book = tmp_path / "book.txt"
    book.write_text("It was a dark and stormy night. The rain fell in torrents.\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out.txt"
    for manifest in (book, empty):
        capsys.readouterr()
        assert _tool("lm_text").main([str(book), "--out", str(out), "--exclude-manifest", str(manifest)]) == 2
        assert "no transcripts" in capsys.readouterr().err and not out.exists()
        assert _tool("lm_overlap").main([str(book), "--manifest", str(manifest)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert f"{manifest}: no transcripts" in err[-1]
    assert _tool("lm_overlap").main([str(book), "--manifest", str(dev)]) == 0
    assert _tool("lm_text").main([str(book), "--out", str(out), "--exclude-order", "-1"]) == 2
    assert "--exclude-order -1" in capsys.readouterr().err and not out.exists()


def test_lm_text_and_overlap_refuse_a_manifest_given_as_text(dev, tmp_path, capsys):
    """A manifest given as the book (lm_text's default plain format) or as the LM text (lm_overlap)
    was read as prose: sentences of its keys, paths and spelled-out durations, and a 'clean' verdict
    for the dev set checked against its own manifest. Both now stop, naming its first line and the
    command for its transcripts."""
    out = tmp_path / "out.txt"
    expected = (f"{dev}:1: a manifest (JSON lines), not text; its transcripts: python tools/lm_text.py {dev} "
                "--format manifest --out TEXT")
    capsys.readouterr()
    assert _tool("lm_text").main([str(dev), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected) and not out.exists()
    assert _tool("lm_overlap").main([str(dev), "--manifest", str(dev)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected)
    assert _tool("lm_text").main([str(dev), "--format", "manifest", "--out", str(out)]) == 0  # as it should be read
    assert _tool("lm_overlap").main([str(out), "--manifest", str(dev)]) == 1  # its own transcripts: overlap


def test_lm_text_tool_names_its_output_for_a_full_disk_and_stops_on_ctrl_c(tmp_path, monkeypatch, capsys):
    """An OSError that carries no file name (ENOSPC) is named after --out; Ctrl-C is one line and
    status 130, with nothing written."""
    book = tmp_path / "book.txt"
    book.write_text("It was a dark and stormy night. The rain fell in torrents.\n")
    out = tmp_path / "out.txt"
    tool = _tool("lm_text")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tool, "prepare_lm_text", full_disk)
    capsys.readouterr()
    assert tool.main([str(book), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"lm_text: error: {out}: No space left on device\n"
    run = interrupt_reading([sys.executable, str(REPO / "tools" / "lm_text.py"), str(tmp_path / "fifo"),
                             "--out", str(out)], tmp_path / "fifo")
    assert (run.returncode, run.stdout, run.stderr) == (130, "", "lm_text: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.txt", "fifo"]  # no output, no temporary file


def test_make_lm_script_refuses_bad_options_before_any_book(tmp_path):
    """Mistakes in make_lm.sh's options are one line and status 2 before any text is prepared:
    a missing value (was bash's 'unbound variable', status 1), an unknown option, an --order that
    is not a number (was 'unbound variable' after every book was read), a --text format that
    tools/lm_text.py refuses (was its 7-line usage) or a --text file that is not there (was found
    after the books), an empty path (an unset shell variable)."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "a few words here"}) + "\n")
    script = str(REPO / "recipes/mini_librispeech/make_lm.sh")
    base = ["--train", str(manifest), "--dev", str(manifest), "--out", str(tmp_path / "lm"), "--books", ""]
    cases = [(["--train"], "make_lm.sh: --train needs a value"),
             ([*base, "--dev", ""], "make_lm.sh: --dev: an empty path (leave the option out for its default)"),
             ([*base, "--bogus"], "make_lm.sh: unknown option --bogus (--help lists them)"),
             ([*base, "--order", "x"], "make_lm.sh: --order 'x': expected 1 to 6 (the highest order KenLM loads)"),
             ([*base, "--text", "poems:a.txt"],
              "make_lm.sh: --text 'poems:a.txt': expected FORMAT:FILE, FORMAT one of plain, bible, gcide, manifest"),
             ([*base, "--text", "plain:a.txt"], "make_lm.sh: --text plain:a.txt: no such file")]
    for args, message in cases:
        run = subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert (run.returncode, run.stdout, run.stderr) == (2, "", message + "\n"), args
    assert not (tmp_path / "lm").exists()
    usage = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and usage.stdout.startswith("The recipe's word n-gram LM")
    assert usage.stdout.endswith("Existing sentence files are reused; --force makes everything again.\n")  # was left out


def test_make_lm_script_keeps_no_part_of_a_book_that_failed(tmp_path):
    """A `bible` that stops half-way (here a stand-in on PATH) left a partial kjv.txt that every
    later run took as the whole book; now nothing is kept and the failure is one line."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "a few words here"}) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bible").write_text("#!/bin/sh\necho 'Genesis 1'\nexit 3\n")
    (bin_dir / "bible").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    out = tmp_path / "lm"
    run = subprocess.run(["bash", str(REPO / "recipes/mini_librispeech/make_lm.sh"), "--train", str(manifest),
                          "--dev", str(manifest), "--out", str(out), "--books", "kjv"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert (run.returncode, run.stderr) == (1, "make_lm.sh: book kjv: `bible Gen1:1-Rev22:21` failed\n")
    assert list(out.iterdir()) == []


def test_lm_overlap_tool_stops_on_ctrl_c_in_one_line(dev, tmp_path):
    """tools/lm_overlap.py runs under run_tool as lm_text does: Ctrl-C is one line and status 130."""
    run = interrupt_reading([sys.executable, str(REPO / "tools" / "lm_overlap.py"), str(tmp_path / "fifo"),
                             "--manifest", str(dev)], tmp_path / "fifo")
    assert (run.returncode, run.stdout, run.stderr) == (130, "", "lm_overlap: interrupted\n")

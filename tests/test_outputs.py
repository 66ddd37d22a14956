"""``asr.outputs``: output paths refused before the work, on real files made in the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asr.outputs import OutputError, check_output, check_output_folder


def test_check_output_folder_makes_nothing_and_refuses_what_cannot_be_a_folder(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kept.txt").write_text("mine")
    for fine in (tmp_path / "run", tmp_path / "run" / "new" / "deeper"):  # there, or to be made below a folder
        check_output_folder(fine)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["kept.txt"]  # the probe left nothing
    notes = tmp_path / "run" / "kept.txt"
    for below in (notes, notes / "sub", notes / "sub" / "deeper"):  # the file in the way is named
        with pytest.raises(OutputError, match=rf"^{re.escape(str(notes))}: exists and is not a folder; hint$"):
            check_output_folder(below, "; hint")
    if Path("/proc/self").is_dir():  # a folder where the system makes no file, even for root
        with pytest.raises(OutputError, match=r"^/proc: cannot write files there \(.+\)$"):
            check_output_folder("/proc/new/out")


def test_check_output_refuses_a_file_path_whose_folder_cannot_hold_it(tmp_path: Path):
    """build-lm --out and evaluate --results-json below a file failed only when writing, after the work."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(OutputError, match=rf"^{re.escape(str(notes))}: exists and is not a folder; "
                                          rf"nothing written at {re.escape(str(notes / 'lm.arpa'))}$"):
        check_output(notes / "lm.arpa", lambda p: True, "an LM")
    assert check_output(tmp_path / "new" / "lm.arpa", lambda p: False, "an LM") == tmp_path / "new" / "lm.arpa"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing made


def test_check_output_refuses_a_file_it_may_not_read_in_those_words(unprivileged):
    """tune-lm --cache on a file it could not open called it 'not a log-prob cache'."""
    folder, as_user = unprivileged
    closed = folder / "cache.pt"
    closed.write_bytes(b"the user's")
    closed.chmod(0)
    with as_user(), pytest.raises(OutputError) as err:
        check_output(closed, lambda p: True, "a log-prob cache")
    assert str(err.value) == f"{closed}: exists and cannot be read (Permission denied); not overwritten"
    closed.chmod(0o644)
    assert closed.read_bytes() == b"the user's"


def test_holds_compares_the_whole_file_with_the_chunks(tmp_path: Path):
    from asr.outputs import holds

    (tmp_path / "m.jsonl").write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert holds(tmp_path / "m.jsonl", [b'{"a": 1}\n', b'{"b": 2}\n'])
    assert not holds(tmp_path / "m.jsonl", [b'{"a": 1}\n'])  # the file goes on
    assert not holds(tmp_path / "m.jsonl", [b'{"a": 1}\n', b'{"b": 2}\n', b"\n"])  # the file ends first
    assert not holds(tmp_path / "m.jsonl", [b'{"a": 2}\n', b'{"b": 2}\n'])
    assert not holds(tmp_path, [b""]) and not holds(tmp_path / "none", [])  # a folder, nothing

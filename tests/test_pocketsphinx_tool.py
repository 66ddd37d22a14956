"""tools/pocketsphinx_baseline.py: the user's mistakes are one line before pocketsphinx is needed
(it is not a dependency of asr, so these run without it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "pocketsphinx_baseline.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


def test_bad_options_and_outputs_are_refused_before_any_decoding(shared_data: Path, tmp_path: Path):
    split = str(shared_data / "LibriSpeech" / "dev-4spk")
    (tmp_path / "hyps.txt").write_text("My Notes, not hypotheses\n")
    (tmp_path / "file").write_text("mine")
    refused = {
        ("--num-utts", "-1"): "--num-utts -1: must be >= 0 (0: all)",
        ("--out", str(tmp_path)): f"{tmp_path / 'hyps.txt'}: exists and is not a hyps.txt of pocketsphinx_baseline",
        ("--out", str(tmp_path / "file")): f"{tmp_path / 'file'}: exists and is not a folder",
    }
    for options, error in refused.items():
        result = _run(split, *options)
        assert result.returncode == 2 and result.stdout == "", options
        assert result.stderr.startswith(f"pocketsphinx_baseline: error: {error}") and len(result.stderr.splitlines()) == 1
    missing = _run(str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and missing.stderr.startswith(f"pocketsphinx_baseline: error: {tmp_path / 'none.jsonl'}: ")
    assert (tmp_path / "hyps.txt").read_text() == "My Notes, not hypotheses\n" and (tmp_path / "file").read_text() == "mine"
    assert not (tmp_path / "errs.txt").exists()


def test_an_earlier_hyps_file_is_recognized(tmp_path: Path):
    sys.path.insert(0, str(TOOL.parent))
    try:
        from pocketsphinx_baseline import _is_our_hyps
    finally:
        sys.path.remove(str(TOOL.parent))
    (tmp_path / "ours.txt").write_text("4088-158077-0078 he said so\n8226-274371-0020 \n")
    (tmp_path / "theirs.txt").write_text("4088-158077-0078 He said so.\n")
    assert _is_our_hyps(tmp_path / "ours.txt") and not _is_our_hyps(tmp_path / "theirs.txt")

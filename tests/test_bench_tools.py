"""The benchmark scripts in tools/ answer a user's mistake with one line, `prog: error: cause`, and status 2 (errors.run_tool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / tool), *args], capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_line(tmp_path: Path):
    manifest = tmp_path / "none.jsonl"
    cases = [
        ("bench_decode.py", [str(tmp_path / "none.pt"), str(manifest)], f"bench_decode: error: {tmp_path / 'none.pt'}: "),
        ("bench_decode.py", [str(tmp_path / "none.pt"), str(manifest), "--threads", "0"],
         "bench_decode: error: --threads 0: must be >= 1"),
        ("bench_loader.py", [str(manifest)], f"bench_loader: error: {manifest}: cannot read manifest"),
        ("bench_loader.py", [str(manifest), "--workers", "-1"], "bench_loader: error: --workers -1: must be >= 0"),
    ]
    for tool, args, start in cases:
        result = _run(tool, *args)
        assert result.returncode == 2 and result.stdout == "", (tool, args, result.stderr)
        assert result.stderr.startswith(start) and len(result.stderr.splitlines()) == 1, result.stderr

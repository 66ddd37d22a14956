#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary (optional: `asr build-lm` falls back to its pure-Python
# Kneser-Ney estimator without them; CI and the tests never need them).
#
# The source is the kenlm sdist from PyPI; the C++ dependencies are Debian's boost packages.
#
# Usage:
#     bash tools/build_kenlm.sh [PREFIX]      # default PREFIX: tools/kenlm (git-ignored)
#     export KENLM_BIN=PREFIX/bin             # where `asr build-lm` looks first (then PATH)
#
# Environment: KENLM_VERSION (default 0.3.0), JOBS (parallel compile jobs, default 2).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
prefix="$(mkdir -p "${1:-$here/kenlm}" && cd "${1:-$here/kenlm}" && pwd)"
version="${KENLM_VERSION:-0.3.0}"
jobs="${JOBS:-2}"

if [[ -x "$prefix/bin/lmplz" && -x "$prefix/bin/build_binary" ]]; then
    echo "already built: $prefix/bin (lmplz, build_binary)"
    exit 0
fi

packages=(build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "build_kenlm: install first: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation "kenlm==$version" -d "$work"
tar -xzf "$work/kenlm-$version.tar.gz" -C "$work"
cmake -S "$work/kenlm-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF >/dev/null
cmake --build "$work/build" --target lmplz build_binary -j "$jobs"
mkdir -p "$prefix/bin"
cp "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$prefix/bin/"
echo "built $prefix/bin/lmplz and $prefix/bin/build_binary"
echo "use them with: export KENLM_BIN=$prefix/bin"

#!/usr/bin/env bash
# The recipe's word n-gram LM, from text that is allowed here, in one command:
#
#   bash recipes/mini_librispeech/make_lm.sh --train exp/<name>/data/train-clean-5.jsonl \
#       --dev exp/<name>/data/dev-4spk.jsonl [--dev M ...] [--out data/lm] [--order 3]
#       [--books "gcide kjv austen"] [--text FORMAT:FILE ...] [--force]
#
# Text: the training manifest's transcripts, plus public-domain books from Debian packages (nothing
# is downloaded; install the packages of the books named in --books):
#   gcide   apt-get install dict-gcide   Webster's 1913 definitions and the 18th/19th-century
#                                        quotations they cite (3.3 M words; the period's vocabulary)
#   kjv     apt-get install bible-kjv    the King James Bible (0.8 M words)
#   austen  apt-get install --no-install-recommends r-cran-janeaustenr
#                                        Jane Austen's six novels (0.7 M words; read with Rscript)
# --text FORMAT:FILE adds any other book (formats of tools/lm_text.py: plain, bible, gcide, manifest).
#
# Every sentence sharing a word 8-gram with a --dev transcript is left out, tools/lm_overlap.py
# checks the whole text (the script fails unless it is clean), and `asr build-lm` estimates the
# LM (modified Kneser-Ney, singleton n-grams above 2-grams pruned). Output:
# <out>/<books>_train.<order>gram.arpa, its absolute path printed last (give it to run.sh --lm).
# Existing sentence files are reused; --force makes everything again.
set -euo pipefail
caller_dir=$PWD  # relative paths on the command line are the caller's (from_caller)
cd "$(dirname "$0")/../.."
. recipes/common.sh
FLAGS="--force" check_options recipes/mini_librispeech/make_lm.sh "$@"

train=""
devs=()
out=data/lm
order=3
books="gcide kjv austen"
texts=()
force=()
while [ $# -gt 0 ]; do
  case "$1" in
    --train) train=$(from_caller --train "$2"); shift 2 ;;
    --dev) devs+=("$(from_caller --dev "$2")"); shift 2 ;;
    --out) out=$(from_caller --out "$2"); shift 2 ;;
    --order) order="$2"; shift 2 ;;
    --books) books="$2"; shift 2 ;;
    --text)
      case "$2" in plain:?* | bible:?* | gcide:?* | manifest:?*) ;; *)
        echo "make_lm.sh: --text '$2': expected FORMAT:FILE, FORMAT one of plain, bible, gcide, manifest" >&2; exit 2 ;;
      esac
      texts+=("${2%%:*}:$(from_caller --text "${2#*:}")")
      [ -f "${texts[-1]#*:}" ] || { echo "make_lm.sh: --text $2: no such file" >&2; exit 2; }
      shift 2 ;;
    --force) force=(--force); shift ;;
    *) echo "make_lm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$order" in
  [1-6]) ;;
  *) echo "make_lm.sh: --order '$order': expected 1 to 6 (the highest order KenLM loads)" >&2; exit 2 ;;
esac
if [ -z "$train" ] || [ ${#devs[@]} -eq 0 ]; then
  echo "make_lm.sh: --train and --dev manifests are required" >&2
  exit 2
fi
for m in "$train" "${devs[@]}"; do
  [ -s "$m" ] || { echo "make_lm.sh: $m: no such manifest (or empty)" >&2; exit 2; }
done

need() {  # need COMMAND PACKAGE BOOK
  command -v "$1" >/dev/null || {
    echo "make_lm.sh: book $3 needs '$1': apt-get install --no-install-recommends $2 (or leave $3 out of --books)" >&2
    exit 2
  }
}

mkdir -p "$out"
exclude=()
for m in "${devs[@]}"; do exclude+=(--exclude-manifest "$m"); done
sentences=()
prepare() {  # prepare NAME FORMAT INPUT [lm_text options]: writes $out/NAME.sentences.txt
  local name=$1 fmt=$2 input=$3
  shift 3
  python tools/lm_text.py "$input" --format "$fmt" --out "$out/$name.sentences.txt" \
    "${exclude[@]}" --exclude-order 8 "${force[@]}" "$@"
  sentences+=("$out/$name.sentences.txt")
}

for book in $books; do
  case "$book" in
    gcide)
      [ -f /usr/share/dictd/gcide.dict.dz ] || {
        echo "make_lm.sh: book gcide needs /usr/share/dictd/gcide.dict.dz: apt-get install dict-gcide" >&2; exit 2; }
      prepare gcide gcide /usr/share/dictd/gcide.dict.dz ;;
    kjv)
      need bible bible-kjv kjv
      if [ ! -s "$out/kjv.txt" ] || [ ${#force[@]} -gt 0 ]; then  # whole or not at all: a part would be kept
        bible Gen1:1-Rev22:21 > "$out/kjv.txt.tmp" \
          || { rm -f "$out/kjv.txt.tmp"; echo "make_lm.sh: book kjv: \`bible Gen1:1-Rev22:21\` failed" >&2; exit 1; }
        mv "$out/kjv.txt.tmp" "$out/kjv.txt"
      fi
      prepare kjv bible "$out/kjv.txt" ;;
    austen)
      need Rscript r-cran-janeaustenr austen
      if [ ! -s "$out/austen.txt" ] || [ ${#force[@]} -gt 0 ]; then
        Rscript -e 'suppressPackageStartupMessages(library(janeaustenr))' \
          -e 'for (b in c("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")) writeLines(c(get(b), ""))' \
          > "$out/austen.txt.tmp" \
          || { echo "make_lm.sh: book austen: R package janeaustenr not found: apt-get install r-cran-janeaustenr" >&2; exit 2; }
        mv "$out/austen.txt.tmp" "$out/austen.txt"
      fi
      prepare austen plain "$out/austen.txt" ;;
    *) echo "make_lm.sh: unknown book $book (gcide, kjv, austen; others with --text FORMAT:FILE)" >&2; exit 2 ;;
  esac
done
label=$(echo $books | tr ' ' '_')  # the LM's name: the books and texts it is made of
for t in "${texts[@]}"; do
  fmt=${t%%:*}
  file=${t#*:}
  name=$(basename "$file")
  prepare "${name%%.*}" "$fmt" "$file"
  label="${label:+${label}_}${name%%.*}"
done
prepare "$(basename "$train" .jsonl)" manifest "$train" --min-words 1

overlap=()
for m in "${devs[@]}"; do overlap+=(--manifest "$m"); done
rc=0
python tools/lm_overlap.py "${sentences[@]}" "${overlap[@]}" --order 8 > "$out/overlap.txt" || rc=$?
cat "$out/overlap.txt"
if [ "$rc" -eq 1 ]; then echo "make_lm.sh: the LM text holds dev text (see $out/overlap.txt)" >&2; fi
[ "$rc" -eq 0 ] || exit 1

lm="$out/${label:+${label}_}train.${order}gram.arpa"
prune=(0 0)
for ((n = 3; n <= order; n++)); do prune+=(1); done
if [ -s "$lm" ] && [ ${#force[@]} -eq 0 ]; then
  echo "make_lm.sh: $lm exists; --force builds it again"
else
  asr build-lm "${sentences[@]}" --order "$order" --prune "${prune[@]:0:$order}" --out "$lm"
fi
case "$lm" in /*) echo "$lm" ;; *) echo "$PWD/$lm" ;; esac  # for run.sh --lm from any folder

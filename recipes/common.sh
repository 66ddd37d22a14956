# Stage code shared by the recipes; sourced by recipes/*/run.sh (bash, set -euo pipefail).

# device_and_hardware NGPU: sets $device (cuda when NGPU > 0, else cpu) and $hardware (a label for
# results files: "<N>x <GPU name>" or "<cores>-core CPU").
device_and_hardware() {
  if [ "$1" -gt 0 ]; then
    device=cuda
    hardware="${1}x $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo GPU)"
  else
    device=cpu
    hardware="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)-core CPU"
  fi
}

# train_stage LABEL CONF_FILE NAME EXP DEVICE NGPU TRAIN_MANIFEST DEV_MANIFEST [key=value ...]
# Trains into EXP unless EXP/model.pt exists, resuming from EXP/last.pt when there is one;
# torchrun runs NGPU processes when NGPU > 1. The log goes to EXP/log/train.log.
train_stage() {
  local label=$1 conf_file=$2 name=$3 exp=$4 device=$5 ngpu=$6 train=$7 dev=$8
  shift 8
  if [ -f "$exp/model.pt" ]; then
    echo "$label: $exp/model.pt exists; delete it (or $exp) to train again"
    return 0
  fi
  local resume=()
  [ -f "$exp/last.pt" ] && resume=(--resume)
  local args=("$conf_file" name="$name" out_dir="$exp" device="$device"
              data.train_manifest="$train" data.dev_manifest="$dev" "$@" "${resume[@]}")
  echo "$label: train $(basename "$conf_file" .yaml) on $(basename "$train" .jsonl) ($ngpu GPU)${resume:+, resuming}"
  mkdir -p "$exp/log"
  local start
  start=$(date +%s)
  if [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc_per_node "$ngpu" -m asr.cli train "${args[@]}" 2>&1 | tee -a "$exp/log/train.log"
  else
    asr train "${args[@]}" 2>&1 | tee -a "$exp/log/train.log"
  fi
  echo "training wall time: $(( $(date +%s) - start )) s" | tee -a "$exp/log/train.log"
}

# check_manifests LABEL DIR NAME...: each DIR/NAME.jsonl must exist and hold at least one line.
check_manifests() {
  local label=$1 dir=$2
  shift 2
  echo "$label: check manifests (CMVN statistics and tokenizer are computed by asr train)"
  local f
  for f in "$@"; do
    if [ ! -s "$dir/$f.jsonl" ]; then echo "run.sh: $dir/$f.jsonl missing or empty" >&2; exit 1; fi
    echo "  $f: $(wc -l < "$dir/$f.jsonl") utterances"
  done
}

# evaluate_stage LABEL EXP MANIFEST TEST_SET [asr evaluate options ...]
# Greedy-scores EXP/model.pt on MANIFEST into EXP/decode/<set>/ (result.json under TEST_SET for
# `asr compare`), unless that set already has a result.json.
evaluate_stage() {
  local label=$1 exp=$2 manifest=$3 test_set=$4
  shift 4
  local set out
  set=$(basename "$manifest" .jsonl)
  out=$exp/decode/$set
  if [ -f "$out/result.json" ]; then echo "$label: $set already scored ($out/wer.txt)"; return 0; fi
  echo "$label: evaluate $set (greedy)"
  mkdir -p "$exp/log"
  asr evaluate "$exp/model.pt" "$manifest" --out "$out" --results-json "$out/result.json" \
    --test-set "$test_set" "$@" 2>&1 | tee "$exp/log/decode-$set.log"
}

# results_stage LABEL EXP TITLE COMMAND: EXP/RESULTS.md, the title (with the date and commit), the
# command and the `asr compare` table of EXP/decode. It needs a result of the evaluation stage; the
# file is written whole, and only over a RESULTS.md this stage wrote (its first line says so); a
# Ctrl-C (or kill) while it is written leaves no temporary file behind (results_interrupted).
RESULTS_MARKER="<!-- written by the recipe's run.sh: a rerun of its last stage replaces this file -->"
results_stage() {
  local label=$1 exp=$2 title=$3 command=$4
  local out=$exp/RESULTS.md
  echo "$label: $out"
  if [ -z "$(find "$exp/decode" -name result.json -print -quit 2>/dev/null)" ]; then
    echo "run.sh: $exp/decode holds no result.json: run the evaluation stage first" >&2
    exit 1
  fi
  if [ -e "$out" ] && [ "$(head -n 1 "$out")" != "$RESULTS_MARKER" ]; then
    echo "run.sh: $out was not written by run.sh (your own or edited: its first line is not the marker); move it away to write the table" >&2
    exit 1
  fi
  results_tmp=$out.tmp.$$
  trap 'results_interrupted INT' INT
  trap 'results_interrupted TERM' TERM
  if ! { echo "$RESULTS_MARKER"
         echo "# $title ($(date +%F), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
         echo
         echo "    $command"
         echo
         asr compare "$exp/decode"; } > "$results_tmp"; then
    rm -f "$results_tmp"
    echo "run.sh: $out not written (asr compare failed)" >&2
    exit 1
  fi
  mv -f "$results_tmp" "$out"
  trap - INT TERM
  cat "$out"
}

# results_interrupted SIGNAL: results_stage's trap for INT and TERM: the half-written table
# ($results_tmp) is removed, RESULTS.md stays as it was, and run.sh then ends by SIGNAL as it would
# have without the trap (so that a calling script sees the interrupt).
results_interrupted() {
  rm -f "$results_tmp"
  trap - INT TERM
  kill -s "$1" $$
}

# manifest_label NAME MANIFEST: "NAME (N utterances, H h)" measured from the manifest itself, for
# results files; just NAME when the manifest is not there (yet).
manifest_label() {
  if [ -f "$2" ]; then
    python -c 'import json, sys
utts = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
print("{} ({} utterances, {:.1f} h)".format(sys.argv[1], len(utts), sum(u["duration"] for u in utts) / 3600))' "$1" "$2"
  else
    echo "$1"
  fi
}

# from_caller OPTION PATH: PATH, given with OPTION, made absolute against $caller_dir, the folder
# run.sh was started in (set before its `cd` to the repository root), so that `--data-dir ../fsdd`
# names what the caller sees. An absolute PATH is kept; an empty one (an unset shell variable) is
# refused, not taken for "not given" (which means "download" for --data-dir).
from_caller() {
  case "$2" in
    '') echo "$(basename "$0"): $1: an empty path (leave the option out for its default)" >&2; exit 2 ;;
    /*) printf '%s\n' "$2" ;;
    *) printf '%s/%s\n' "$caller_dir" "$2" ;;
  esac
}

# check_options SCRIPT "$@": --help prints the comment block at the top of SCRIPT (its usage and
# stages) and exits 0; any other --option must be one of SCRIPT's (a line `  --option)` of its
# option loop) and needs a value after it, a separate word (FLAGS lists those that take none).
# Run it before the option loop, so that a mistake is one line, not bash's error or a misleading one.
check_options() {
  local script=$1 prog
  prog=$(basename "$script")
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$script"; exit 0 ;;
      --*=*) echo "$prog: $1: give the value as a separate word (${1%%=*} ${1#*=})" >&2; exit 2 ;;
      --*)
        if ! awk -v arm="$1)" '{ sub(/^[ \t]+/, "") } index($0, arm) == 1 { found = 1 } END { exit !found }' "$script"; then
          echo "$prog: unknown option $1 (--help lists them)" >&2; exit 2
        fi
        if [[ " ${FLAGS:-} " != *" $1 "* ]]; then
          if [ $# -lt 2 ] || [[ "$2" == --* ]]; then echo "$prog: $1 needs a value" >&2; exit 2; fi
          shift
        fi ;;
    esac
    shift
  done
}

# check_folder OPTION PATH: PATH, given with OPTION, is a folder.
check_folder() {
  if [ -e "$2" ] && [ ! -d "$2" ]; then echo "run.sh: $1 $2: not a folder" >&2; exit 2; fi
  if [ ! -d "$2" ]; then echo "run.sh: $1 $2: no such folder" >&2; exit 2; fi
}

# check_stages STAGE STOP_STAGE FIRST LAST: whole numbers naming at least one of the stages FIRST..LAST.
check_stages() {
  check_count --stage "$1"
  check_count --stop-stage "$2"
  if [ "$1" -gt "$2" ] || [ "$1" -gt "$4" ] || [ "$2" -lt "$3" ]; then
    echo "run.sh: --stage $1 --stop-stage $2: no stage to run (the stages are $3 to $4)" >&2
    exit 2
  fi
}

# check_count OPTION VALUE: VALUE is a whole number.
check_count() {
  case "$2" in
    '' | *[!0-9]*) echo "run.sh: $1 '$2': expected a whole number" >&2; exit 2 ;;
  esac
}

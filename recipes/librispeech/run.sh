#!/usr/bin/env bash
# LibriSpeech (OpenSLR SLR12): download, manifests, train a DS2-style model, evaluate, results table.
#
#   bash recipes/librispeech/run.sh [--conf medium|ds2] [--ngpu N] [--data-dir DIR] [--skip-lm]
#                                   [--manifest-dir DIR] [--exp DIR]
#                                   [--stage N] [--stop-stage M] [key=value ...]
#
# Stages (each skips work already done, so a run can be stopped and started again):
#   1 download the parts the config needs (medium: train-clean-100; ds2: all 960 h) plus
#     dev/test clean/other and the SLR11 LM files (--skip-lm: not those) into data/librispeech;
#     resumable, size- and MD5-checked (asr download --list shows the table)
#   2 manifests: data/librispeech/manifests/<split>.jsonl (+ .summary.json, .problems.txt;
#     --manifest-dir DIR puts them elsewhere); train-960.jsonl for ds2
#   3 check the manifests; global CMVN statistics and the tokenizer are computed by `asr train`
#     from the config (features.normalize=global, tokenizer.kind) and stored in the checkpoint
#   4 train exp/librispeech-<conf>/ (resumes from last.pt; --ngpu N > 1 runs torchrun)
#   5 evaluate dev/test clean/other, greedy: exp/.../decode/<set>/{hyps,errs,wer}.txt, result.json
#   6 exp/.../RESULTS.md: the `asr compare` table (DS1 / DS2 / human beside these results)
#
# --data-dir DIR: an existing LibriSpeech tree (a folder of splits, or one holding LibriSpeech/);
# stage 1 is then skipped. key=value arguments go to `asr train` (e.g. epochs=1).
set -euo pipefail
caller_dir=$PWD  # relative paths on the command line are the caller's (from_caller)
cd "$(dirname "$0")/../.."
. recipes/common.sh
FLAGS="--skip-lm" check_options recipes/librispeech/run.sh "$@"

conf=medium
ngpu=1
data_dir=""
exp=""
manifests=data/librispeech/manifests
skip_lm=false
stage=1
stop_stage=6
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --conf) conf="$2"; shift 2 ;;
    --ngpu) ngpu="$2"; shift 2 ;;
    --data-dir) data_dir=$(from_caller --data-dir "$2"); shift 2 ;;
    --skip-lm) skip_lm=true; shift ;;
    --manifest-dir) manifests=$(from_caller --manifest-dir "$2"); shift 2 ;;
    --exp) exp=$(from_caller --exp "$2"); shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
check_stages "$stage" "$stop_stage" 1 6
[ -z "$data_dir" ] || check_folder --data-dir "$data_dir"
check_count --ngpu "$ngpu"

case "$conf" in
  medium) train_parts="train-clean-100"; train=train-clean-100 ;;
  ds2) train_parts="train-clean-100 train-clean-360 train-other-500"; train=train-960 ;;
  *) echo "run.sh: --conf must be medium or ds2, got $conf" >&2; exit 2 ;;
esac
eval_sets="dev-clean dev-other test-clean test-other"
download_dir=data/librispeech
exp=${exp:-exp/librispeech-$conf}
mkdir -p "$exp/log"

device_and_hardware "$ngpu"

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -n "$data_dir" ]; then
    echo "stage 1: using $data_dir; nothing to download"
  else
    echo "stage 1: download $train_parts $eval_sets$($skip_lm || echo ' lm') to $download_dir"
    parts="$train_parts $eval_sets"
    $skip_lm || parts="$parts lm"
    # shellcheck disable=SC2086
    asr download $parts --dest "$download_dir" 2>&1 | tee -a "$exp/log/download.log"
  fi
fi
data_dir=${data_dir:-$download_dir}

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: manifests in $manifests"
  splits=$(echo $train_parts $eval_sets | tr ' ' ',')
  asr prepare librispeech --data-dir "$data_dir" --out "$manifests" --splits "$splits" 2>&1 | tee -a "$exp/log/prepare.log"
  parts=("$manifests"/train-clean-100.jsonl "$manifests"/train-clean-360.jsonl "$manifests"/train-other-500.jsonl)
  stale=false
  for part in "${parts[@]}"; do [ "$part" -nt "$manifests/train-960.jsonl" ] && stale=true; done
  if [ "$train" = train-960 ] && $stale; then  # missing, or a part prepared again since
    cat "${parts[@]}" > "$manifests/.train-960.jsonl.tmp"
    mv "$manifests/.train-960.jsonl.tmp" "$manifests/train-960.jsonl"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  check_manifests "stage 3" "$manifests" "$train" $eval_sets
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  train_stage "stage 4" "recipes/librispeech/conf/$conf.yaml" "librispeech-$conf" "$exp" "$device" "$ngpu" \
    "$manifests/$train.jsonl" "$manifests/dev-clean.jsonl" "${extra[@]}"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  train_label=$(manifest_label "LibriSpeech $train" "$manifests/$train.jsonl")  # measured, not nominal
  for set in $eval_sets; do
    evaluate_stage "stage 5" "$exp" "$manifests/$set.jsonl" "librispeech-$set" \
      --device "$device" --train-data "$train_label" --hardware "$hardware"
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  results_stage "stage 6" "$exp" "LibriSpeech, conf $conf" \
    "bash recipes/librispeech/run.sh --conf $conf --ngpu $ngpu ${extra[*]}"
fi

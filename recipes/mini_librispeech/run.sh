#!/usr/bin/env bash
# mini-LibriSpeech (OpenSLR SLR31): train on train-clean-5, dev set ../shared/data/LibriSpeech/dev-4spk.
#
#   bash recipes/mini_librispeech/run.sh [--data-dir DIR] [--dev-dir DIR] [--train-split NAME]
#                                        [--conf medium_aug] [--ngpu N] [--name NAME] [--exp DIR]
#                                        [--lm LM.arpa [--lm-weights 0.5:2.5:0.5] [--word-scores -3:1:1]
#                                         [--tune-beam-size 50] [--beam-size 500]]
#                                        [--stage N] [--stop-stage M] [key=value ...]
#
# Stages (each skips work already done):
#   1 download train-clean-5 and dev-clean-2 into data/mini_librispeech (skipped with --data-dir);
#     resumable, size- and MD5-checked
#   2 manifests for every split in the data folder and for the dev folder:
#     exp/<name>/data/<split>.jsonl (+ .summary.json, .problems.txt)
#   3 check the manifests; global CMVN statistics and the tokenizer are computed by `asr train`
#   4 train exp/<name>/ (resumes from last.pt; --ngpu N > 1 runs torchrun; --ngpu 0: CPU)
#   5 evaluate, greedy, on the dev set and on dev-clean-2 when present: decode/<set>/result.json
#   6 with --lm: tune the LM weight and word score on the dev set (`asr tune-lm`, the model's
#     log-probs kept in decode/<dev>.logprobs.pt) with a beam of --tune-beam-size, then score the
#     dev set with the best pair and a beam of --beam-size: decode/<dev>-lm/result.json (a final
#     beam of 500 instead of 50 gained 2.5 WER points in RESULTS.md). The LM, from allowed text
#     only: bash recipes/mini_librispeech/make_lm.sh --train exp/<name>/data/train-clean-5.jsonl
#     --dev exp/<name>/data/dev-4spk.jsonl (prints the ARPA file's path; see RESULTS.md)
#   7 exp/<name>/RESULTS.md: the `asr compare` table
#
# Offline, --data-dir takes any LibriSpeech-layout folder (a split, or a folder of splits);
# --train-split names the split to train on (default train-clean-5, or the folder itself when it
# is a split). key=value arguments go to `asr train` (e.g. preset=tiny epochs=1).
set -euo pipefail
caller_dir=$PWD  # relative paths on the command line are the caller's (from_caller)
cd "$(dirname "$0")/../.."
. recipes/common.sh
check_options recipes/mini_librispeech/run.sh "$@"

conf=medium_aug
ngpu=1
data_dir=""
dev_dir=../shared/data/LibriSpeech/dev-4spk
train_split=""
name=""
exp=""
stage=1
stop_stage=7
lm=""
lm_weights=0.5:2.5:0.5
word_scores=-3:1:1
tune_beam_size=50
beam_size=500
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --conf) conf="$2"; shift 2 ;;
    --ngpu) ngpu="$2"; shift 2 ;;
    --data-dir) data_dir=$(from_caller --data-dir "$2"); shift 2 ;;
    --dev-dir) dev_dir=$(from_caller --dev-dir "$2"); shift 2 ;;
    --train-split) train_split="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --exp) exp=$(from_caller --exp "$2"); shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --lm) lm=$(from_caller --lm "$2"); shift 2 ;;
    --lm-weights) lm_weights="$2"; shift 2 ;;
    --word-scores) word_scores="$2"; shift 2 ;;
    --tune-beam-size) tune_beam_size="$2"; shift 2 ;;
    --beam-size) beam_size="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
check_stages "$stage" "$stop_stage" 1 7
[ -z "$data_dir" ] || check_folder --data-dir "$data_dir"
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then check_folder --dev-dir "$dev_dir"; fi
if [ ! -f "recipes/mini_librispeech/conf/$conf.yaml" ]; then
  echo "run.sh: --conf $conf: no recipes/mini_librispeech/conf/$conf.yaml" >&2; exit 2
fi
if [ -n "$lm" ] && [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ] && [ ! -f "$lm" ]; then
  echo "run.sh: --lm $lm: no such file" >&2; exit 2  # before the stages, not after hours of training
fi
check_count --ngpu "$ngpu"
check_count --tune-beam-size "$tune_beam_size"
check_count --beam-size "$beam_size"

name=${name:-mini_librispeech-$conf}
exp=${exp:-exp/$name}
data=$exp/data
download_dir=data/mini_librispeech
dev=$(basename "$dev_dir")
mkdir -p "$exp/log"
if [ -z "$train_split" ]; then
  if [ -n "$data_dir" ] && [ -z "$(find "$data_dir" -mindepth 1 -maxdepth 1 -type d -name LibriSpeech)" ] \
     && [ -n "$(find "$data_dir" -mindepth 3 -maxdepth 3 -name '*.trans.txt' -print -quit)" ]; then
    train_split=$(basename "$data_dir")  # --data-dir is a split itself
  else
    train_split=train-clean-5
  fi
fi

device_and_hardware "$ngpu"

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -n "$data_dir" ]; then
    echo "stage 1: using $data_dir; nothing to download"
  else
    echo "stage 1: download mini_librispeech (train-clean-5, dev-clean-2) to $download_dir"
    asr download mini_librispeech --dest "$download_dir" 2>&1 | tee -a "$exp/log/download.log"
  fi
fi
data_dir=${data_dir:-$download_dir}

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: manifests in $data"
  asr prepare librispeech --data-dir "$data_dir" --out "$data" 2>&1 | tee -a "$exp/log/prepare.log"
  asr prepare librispeech --data-dir "$dev_dir" --out "$data" 2>&1 | tee -a "$exp/log/prepare.log"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 3 ] && [ ! -s "$data/$train_split.jsonl" ]; then
  found=$(find "$data" -maxdepth 1 -name '*.jsonl' -printf '%f\n' 2>/dev/null | sed 's/\.jsonl$//' | sort \
          | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $0 }')
  echo "run.sh: training manifest $data/$train_split.jsonl missing or empty: --train-split NAME names the split" \
       "to train on (manifests in $data: ${found:-none})" >&2
  exit 2
fi

eval_sets=("$dev")  # an array: a folder's name may hold a space
[ -f "$data/dev-clean-2.jsonl" ] && [ "$dev" != dev-clean-2 ] && eval_sets+=(dev-clean-2)

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  check_manifests "stage 3" "$data" "$train_split" "${eval_sets[@]}"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  train_stage "stage 4" "recipes/mini_librispeech/conf/$conf.yaml" "$name" "$exp" "$device" "$ngpu" \
    "$data/$train_split.jsonl" "$data/$dev.jsonl" "${extra[@]}"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  for set in "${eval_sets[@]}"; do
    evaluate_stage "stage 5" "$exp" "$data/$set.jsonl" "mini_librispeech-$set" \
      --device "$device" --hardware "$hardware"
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  out=$exp/decode/$dev-lm
  if [ -z "$lm" ]; then
    echo "stage 6: no --lm given; greedy decoding only"
  elif [ -f "$out/result.json" ]; then
    echo "stage 6: $dev already scored with the LM ($out/wer.txt)"
  else
    echo "stage 6: tune the LM weights of $lm on $dev, then score it"
    asr tune-lm "$exp/model.pt" "$data/$dev.jsonl" --lm "$lm" --lm-weights "$lm_weights" \
      --word-scores="$word_scores" --beam-size "$tune_beam_size" --cache "$exp/decode/$dev.logprobs.pt" --device "$device" \
      2>&1 | tee "$exp/log/tune-lm-$dev.log"
    if ! read -r alpha beta < <(sed -n 's/^best lm_weight \(\S*\) word_score \(\S*\) .*/\1 \2/p' "$exp/log/tune-lm-$dev.log"); then
      echo "run.sh: stage 6: no 'best lm_weight ... word_score ...' line in $exp/log/tune-lm-$dev.log" >&2
      exit 1
    fi
    asr evaluate "$exp/model.pt" "$data/$dev.jsonl" --out "$out" --results-json "$out/result.json" \
      --test-set "mini_librispeech-$dev" --lm "$lm" --lm-weight "$alpha" --word-score "$beta" --beam-size "$beam_size" \
      --device "$device" --hardware "$hardware" 2>&1 | tee "$exp/log/decode-$dev-lm.log"
  fi
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  results_stage "stage 7" "$exp" "mini-LibriSpeech, conf $conf" \
    "bash recipes/mini_librispeech/run.sh --conf $conf --ngpu $ngpu ${extra[*]}"
fi

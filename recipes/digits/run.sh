#!/usr/bin/env bash
# Spoken digits (FSDD): prepare, train the `small` preset on CPU, evaluate WER.
#
#   bash recipes/digits/run.sh [--data-dir DIR] [--split official|speaker] [--stage N] [--stop-stage M]
#
# Stages: 0 prepare (resample 8 kHz -> 16 kHz, manifests, the ten-word lexicon), 1 train,
# 2 evaluate: greedy decoding (decode/test) and beam search restricted to the ten digit words
# (decode/test-lexicon).
# Everything goes under exp/digits/ (exp/digits-speaker/ for --split speaker); the final
# self-contained checkpoint is exp/digits/model.pt. Without --data-dir, FSDD is downloaded to data/fsdd.
set -euo pipefail
cd "$(dirname "$0")/../.."

data_dir=""
split=official
stage=0
stop_stage=2
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_dir="$2"; shift 2 ;;
    --split) split="$2"; shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$split" = official ]; then name=digits; else name=digits-speaker; fi
exp=exp/$name
if [ "$split" = official ]; then conf=recipes/digits/conf/small.yaml; else conf=recipes/digits/conf/small_speaker.yaml; fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -f "$exp/data/.done" ]; then
    echo "stage 0: $exp/data already prepared"
  else
    echo "stage 0: prepare FSDD ($split split)"
    asr prepare digits ${data_dir:+--data-dir "$data_dir"} --split "$split" --out "$exp/data"
    touch "$exp/data/.done"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$exp/model.pt" ]; then
    echo "stage 1: $exp/model.pt exists; delete it (or $exp) to train again"
  else
    echo "stage 1: train"
    start=$(date +%s)
    asr train "$conf" name="$name" data.train_manifest="$exp/data/train.jsonl" "${extra[@]}"
    echo "training wall time: $(( $(date +%s) - start )) s"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: evaluate on $exp/data/test.jsonl (greedy)"
  asr evaluate "$exp/model.pt" "$exp/data/test.jsonl" --out "$exp/decode/test"
  echo "stage 2: evaluate on $exp/data/test.jsonl (lexicon of the ten digit words)"
  asr evaluate "$exp/model.pt" "$exp/data/test.jsonl" --lexicon "$exp/data/words.txt" --out "$exp/decode/test-lexicon"
fi

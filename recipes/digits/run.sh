#!/usr/bin/env bash
# Spoken digits (FSDD): prepare, train the `small` preset on CPU, evaluate WER.
#
#   bash recipes/digits/run.sh [--data-dir DIR] [--split official|speaker] [--conf NAME] [--stage N] [--stop-stage M]
#
# Stages: 0 prepare (resample 8 kHz -> 16 kHz, manifests, the ten-word lexicon), 1 train,
# 2 evaluate: greedy decoding (decode/test) and beam search restricted to the ten digit words
# (decode/test-lexicon).
# Everything goes under exp/digits/ (exp/digits-speaker/ for --split speaker); the final
# self-contained checkpoint is exp/digits/model.pt. Without --data-dir, FSDD is downloaded to data/fsdd.
# --conf NAME trains recipes/digits/conf/NAME.yaml instead, into exp/digits-<NAME>/ (e.g.
# small_stream: a forward-only model for `asr stream`, official split; stage 2 then also streams
# the test set in 100 ms chunks and checks that it gives the transcripts of the greedy decoding).
set -euo pipefail
caller_dir=$PWD  # relative paths on the command line are the caller's (from_caller)
cd "$(dirname "$0")/../.."
. recipes/common.sh
check_options recipes/digits/run.sh "$@"

data_dir=""
split=official
conf_name=""
stage=0
stop_stage=2
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_dir=$(from_caller --data-dir "$2"); shift 2 ;;
    --split) split="$2"; shift 2 ;;
    --conf) conf_name="$2"; shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
check_stages "$stage" "$stop_stage" 0 2
case "$split" in official | speaker) ;; *) echo "run.sh: --split '$split': expected official or speaker" >&2; exit 2 ;; esac
if [ -n "$data_dir" ] && [ "$stage" -le 0 ]; then check_folder --data-dir "$data_dir"; fi

if [ "$split" = official ]; then name=digits; else name=digits-speaker; fi
exp=exp/$name
if [ "$split" = official ]; then conf=recipes/digits/conf/small.yaml; else conf=recipes/digits/conf/small_speaker.yaml; fi
if [ -n "$conf_name" ]; then
  conf=recipes/digits/conf/$conf_name.yaml
  [ -f "$conf" ] || { echo "run.sh: no $conf" >&2; exit 2; }
  name=$name-$conf_name
  exp=exp/$name
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  source_dir=download
  if [ -n "$data_dir" ]; then source_dir=$(cd "$data_dir" 2>/dev/null && pwd -P || echo "$data_dir"); fi
  if [ -f "$exp/data/.done" ]; then
    prepared_from=$(cat "$exp/data/.done")  # empty in a marker written before 2026-11-25
    if [ -n "$prepared_from" ] && [ "$prepared_from" != "$source_dir" ]; then
      echo "run.sh: stage 0: $exp/data was prepared from $prepared_from, not $source_dir; delete $exp to prepare it again" >&2
      exit 2
    fi
    echo "stage 0: $exp/data already prepared"
  else
    echo "stage 0: prepare FSDD ($split split)"
    asr prepare digits ${data_dir:+--data-dir "$data_dir"} --split "$split" --out "$exp/data"
    echo "$source_dir" > "$exp/data/.done"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$exp/model.pt" ]; then
    echo "stage 1: $exp/model.pt exists; delete it (or $exp) to train again"
  else
    echo "stage 1: train"
    start=$(date +%s)
    resume=()
    if [ -f "$exp/last.pt" ]; then resume=(--resume); echo "stage 1: resuming from $exp/last.pt"; fi
    asr train "$conf" name="$name" out_dir="$exp" data.train_manifest="$exp/data/train.jsonl" "${extra[@]}" "${resume[@]}"
    echo "training wall time: $(( $(date +%s) - start )) s"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: evaluate on $exp/data/test.jsonl (greedy)"
  asr evaluate "$exp/model.pt" "$exp/data/test.jsonl" --out "$exp/decode/test"
  echo "stage 2: evaluate on $exp/data/test.jsonl (lexicon of the ten digit words)"
  asr evaluate "$exp/model.pt" "$exp/data/test.jsonl" --lexicon "$exp/data/words.txt" --out "$exp/decode/test-lexicon"
  if grep -q "bidirectional: false" "$exp/config.yaml"; then
    echo "stage 2: stream the test set in 100 ms chunks (asr stream) and compare with the greedy decoding"
    mapfile -t audio < <(python -c 'import json, os, sys
base = os.path.dirname(sys.argv[1])
for line in open(sys.argv[1]):
    print(os.path.join(base, json.loads(line)["audio_filepath"]))' "$exp/data/test.jsonl")
    asr stream "$exp/model.pt" "${audio[@]}" --chunk-ms 100 2> "$exp/decode/stream.log" | sort > "$exp/decode/stream.txt"
    asr transcribe "$exp/model.pt" "${audio[@]}" | sort > "$exp/decode/transcribe.txt"
    if cmp -s "$exp/decode/stream.txt" "$exp/decode/transcribe.txt"; then
      echo "  streamed transcripts = whole-file transcripts ($(wc -l < "$exp/decode/stream.txt") files)"
    else
      echo "run.sh: streamed transcripts differ from the whole-file ones: diff $exp/decode/stream.txt $exp/decode/transcribe.txt" >&2
      exit 1
    fi
  fi
fi

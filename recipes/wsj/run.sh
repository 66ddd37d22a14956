#!/usr/bin/env bash
# WSJ (LDC93S6A/B + LDC94S13A/B, from the discs): manifests, LM, train on train_si284, evaluate
# test_dev93 / test_eval92 / test_eval93 greedy and with an LM, results table against DS1/DS2/human.
#
#   bash recipes/wsj/run.sh --wsj0 DIR --wsj1 DIR [--lm tcb20onp|bcb20onp|si284|none] [--conf medium]
#                           [--ngpu N] [--data DIR] [--exp DIR] [--stage N] [--stop-stage M] [key=value ...]
#
# Stages (each skips work already done):
#   1 manifests: <data>/manifests/<set>.jsonl (--data, default data/wsj) (+ .summary.json, .problems.txt) with
#     `asr prepare wsj` (asr/datasets/wsj.py: Kaldi's sets, .dot normalization, SPHERE/shorten
#     read in place through PyAV -- no sph2pipe, no conversion)
#   2 LM <data>/lm/<lm>.arpa:
#       tcb20onp (default) the LDC's 20k open-vocabulary non-verbalized-punctuation trigram,
#                wsj1/doc/lng_modl/base_lm/tcb20onp.z on disc 13-32.1 (Kaldi's "tg");
#       bcb20onp its bigram (Kaldi's "bg");
#       si284    a 4-gram built by `asr build-lm` from the train_si284 transcripts (small, but
#                needs no LM files from the discs);
#       none     greedy decoding only.
#     The LDC files are gzip data; words are lower-cased to match the transcripts.
#   3 train exp/wsj-<conf>/ on train_si284, dev set test_dev93 (resumes from last.pt)
#   4 evaluate greedy: exp/.../decode/<set>/{hyps,errs,wer}.txt, result.json
#   5 with the LM: `asr tune-lm` picks the LM weight and word score on test_dev93, then
#     `asr evaluate --lm` scores the sets: exp/.../decode/<set>_<lm>/
#   6 exp/.../RESULTS.md: `asr compare` (eval'92 / eval'93 rows beside DS1 / DS2 / human)
set -euo pipefail
caller_dir=$PWD  # relative paths on the command line are the caller's (from_caller)
cd "$(dirname "$0")/../.."
. recipes/common.sh
check_options recipes/wsj/run.sh "$@"

wsj0=""
wsj1=""
lm=tcb20onp
data=data/wsj
conf=medium
ngpu=1
exp=""
stage=1
stop_stage=6
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wsj0) wsj0=$(from_caller --wsj0 "$2"); shift 2 ;;
    --wsj1) wsj1=$(from_caller --wsj1 "$2"); shift 2 ;;
    --lm) lm="$2"; shift 2 ;;
    --data) data=$(from_caller --data "$2"); shift 2 ;;
    --conf) conf="$2"; shift 2 ;;
    --ngpu) ngpu="$2"; shift 2 ;;
    --exp) exp=$(from_caller --exp "$2"); shift 2 ;;
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    *=*) extra+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
check_stages "$stage" "$stop_stage" 1 6
check_count --ngpu "$ngpu"
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -z "$wsj0" ] || [ -z "$wsj1" ]; then echo "run.sh: stage 1 needs --wsj0 DIR and --wsj1 DIR" >&2; exit 2; fi
  check_folder --wsj0 "$wsj0"
  check_folder --wsj1 "$wsj1"
fi
if [ ! -f "recipes/wsj/conf/$conf.yaml" ]; then echo "run.sh: --conf $conf: no recipes/wsj/conf/$conf.yaml" >&2; exit 2; fi
case "$lm" in
  tcb20onp|bcb20onp|tcb05cnp|bcb05cnp|si284|none) ;;
  *) echo "run.sh: --lm must be tcb20onp, bcb20onp, tcb05cnp, bcb05cnp, si284 or none, got $lm" >&2; exit 2 ;;
esac

manifests=$data/manifests
lm_dir=$data/lm
exp=${exp:-exp/wsj-$conf}
eval_sets="test_dev93 test_eval92 test_eval93"
mkdir -p "$exp/log"
device_and_hardware "$ngpu"
paper_key() {  # the `asr compare` row of a set
  case "$1" in test_eval92) echo wsj-eval92 ;; test_eval93) echo wsj-eval93 ;; *) echo "wsj-${1#test_}" ;; esac
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: manifests in $manifests"
  asr prepare wsj --wsj0 "$wsj0" --wsj1 "$wsj1" --out "$manifests" \
    --sets train_si284,test_dev93,test_eval92,test_eval93 2>&1 | tee -a "$exp/log/prepare.log"
fi

lm_arpa=$lm_dir/$lm.arpa
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ] && [ "$lm" != none ]; then
  if [ -s "$lm_arpa" ]; then
    echo "stage 2: $lm_arpa exists"
  elif [ "$lm" = si284 ]; then
    echo "stage 2: 4-gram from the train_si284 transcripts -> $lm_arpa"
    if [ ! -s "$manifests/train_si284.jsonl" ]; then
      echo "run.sh: stage 2: $manifests/train_si284.jsonl missing or empty: run stage 1 first" >&2; exit 1
    fi
    mkdir -p "$lm_dir"
    python -c 'import json, sys; [print(json.loads(l)["text"]) for l in open(sys.argv[1]) if l.strip()]' \
      "$manifests/train_si284.jsonl" > "$lm_dir/si284.txt"
    asr build-lm "$lm_dir/si284.txt" --order 4 --out "$lm_arpa" 2>&1 | tee -a "$exp/log/lm.log"
  else
    roots=(); [ -n "$wsj1" ] && roots+=("$wsj1"); [ -n "$wsj0" ] && roots+=("$wsj0")
    src=""
    [ ${#roots[@]} -gt 0 ] && src=$(find -L "${roots[@]}" -ipath "*lng_modl/base_lm/$lm.z" 2>/dev/null | head -1 || true)
    if [ -z "$src" ]; then
      echo "run.sh: $lm.z not found under --wsj1/--wsj0 (wsj1/doc/lng_modl/base_lm/ on disc 13-32.1);" \
           "use --lm si284 or --lm none" >&2
      exit 1
    fi
    echo "stage 2: $src -> $lm_arpa (lower-cased words)"
    mkdir -p "$lm_dir"
    # gzip data despite the .z; text before \data\ is dropped (as Kaldi does); n-gram lines are
    # rewritten tab-separated (KenLM insists) with the words lower-cased
    gunzip -c "$src" 2>/dev/null | awk '
      BEGIN { started = 0; n = 0 }
      /^\\data\\/ { started = 1 }
      !started { next }
      /^\\/ { n = ($0 ~ /^\\[0-9]+-grams:/) ? substr($0, 2) + 0 : 0; print; next }
      n > 0 && NF >= n + 1 {
        line = $1 "\t" tolower($2)
        for (i = 3; i <= n + 1; i++) line = line " " tolower($i)
        if (NF >= n + 2) line = line "\t" $(n + 2)
        print line; next
      }
      { print }' > "$lm_arpa.tmp" \
      || { rm -f "$lm_arpa.tmp"; echo "run.sh: stage 2: $src: not whole gzip data (gunzip -t tells why)" >&2; exit 1; }
    mv "$lm_arpa.tmp" "$lm_arpa"
  fi
fi

train_label=$(manifest_label "WSJ train_si284" "$manifests/train_si284.jsonl")  # e.g. "WSJ train_si284 (37416 utterances, 81.3 h)"

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  train_stage "stage 3" "recipes/wsj/conf/$conf.yaml" "wsj-$conf" "$exp" "$device" "$ngpu" \
    "$manifests/train_si284.jsonl" "$manifests/test_dev93.jsonl" "${extra[@]}"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for set in $eval_sets; do
    evaluate_stage "stage 4" "$exp" "$manifests/$set.jsonl" "$(paper_key "$set")" \
      --device "$device" --train-data "$train_label" --hardware "$hardware"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ] && [ "$lm" != none ]; then
  weights=$exp/decode/lm-weights-$lm.txt
  if [ ! -s "$weights" ]; then
    echo "stage 5: tune the $lm LM weight and word score on test_dev93"
    asr tune-lm "$exp/model.pt" "$manifests/test_dev93.jsonl" --lm "$lm_arpa" --device "$device" \
      2>&1 | tee "$exp/log/tune-$lm.log"
    # the last line reads "best lm_weight A word_score B WER ..."
    best=$(sed -n 's/^best lm_weight \([^ ]*\) word_score \([^ ]*\) .*/\1 \2/p' "$exp/log/tune-$lm.log" | tail -1)
    if [ -z "$best" ]; then
      echo "run.sh: stage 5: no 'best lm_weight ... word_score ...' line in $exp/log/tune-$lm.log" >&2
      exit 1
    fi
    mkdir -p "$exp/decode"  # stage 4 makes it, unless it was skipped
    echo "$best" > "$weights"
  fi
  read -r alpha beta < "$weights"
  for set in $eval_sets; do
    out=$exp/decode/${set}_$lm
    if [ -f "$out/result.json" ]; then echo "stage 5: $set with $lm already scored"; continue; fi
    echo "stage 5: evaluate $set with $lm (lm_weight $alpha, word_score $beta)"
    asr evaluate "$exp/model.pt" "$manifests/$set.jsonl" --out "$out" --device "$device" \
      --lm "$lm_arpa" --lm-weight "$alpha" --word-score "$beta" \
      --results-json "$out/result.json" --test-set "$(paper_key "$set")" \
      --train-data "$train_label" --hardware "$hardware" 2>&1 | tee "$exp/log/decode-${set}_$lm.log"
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  results_stage "stage 6" "$exp" "WSJ, conf $conf, LM $lm" \
    "bash recipes/wsj/run.sh --wsj0 $wsj0 --wsj1 $wsj1 --lm $lm --conf $conf --ngpu $ngpu ${extra[*]}"
fi

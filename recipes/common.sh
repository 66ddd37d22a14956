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

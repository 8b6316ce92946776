#!/usr/bin/env bash
# LibriTTS recipe: download -> manifests -> train -> evaluate on test-clean -> export.
# Run from the repository root:  bash recipes/libritts/run.sh [--stage N] [--stop-stage M] [options]
#
# Stages: 0 download, 1 prepare manifests, 2 train, 3 evaluate (test-clean), 4 export.
# Every stage can be re-run: the download resumes, training resumes from its latest checkpoint.
set -euo pipefail

stage=0
stop_stage=4
data=data/libritts                 # download folder; manifests go to $data/manifests
exp=runs/libritts                   # run folder: logs, checkpoints, evaluation, exported model
config=recipes/libritts/config.yaml
train_subsets="train-clean-100 train-clean-360 train-other-500"
min_duration=0.5
max_duration=30
gpus=1                             # >1: accelerate launch with that many processes
eval_files=                        # evaluate only the first N test files (empty: all)
keep_archives=false

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF
Options (default):
  --stage N              first stage to run ($stage)
  --stop-stage N         last stage to run ($stop_stage)
  --data DIR             corpus folder ($data)
  --exp DIR              run folder ($exp)
  --config FILE          training config ($config)
  --train-subsets "A B"  subsets in train.jsonl ($train_subsets)
  --min-duration S       shortest utterance kept ($min_duration)
  --max-duration S       longest utterance kept ($max_duration)
  --gpus N               processes for training ($gpus)
  --eval-files N         evaluate the first N test-clean files only (all)
  --keep-archives        keep the downloaded .tar.gz files
Anything after "--" is passed to "simvq-audio train" as config overrides, e.g. -- training.max_steps=1000
EOF
}

train_overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --train-subsets) train_subsets=$2; shift 2 ;;
    --min-duration) min_duration=$2; shift 2 ;;
    --max-duration) max_duration=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --eval-files) eval_files=$2; shift 2 ;;
    --keep-archives) keep_archives=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; train_overrides=("$@"); break ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

manifests=$data/manifests
here=$(dirname "$0")
log() { echo "[$(date '+%H:%M:%S')] $*"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# The newest checkpoint folder of the run (step-NNNNNNNN, zero-padded so that names sort by step).
latest_checkpoint() {
  local found
  found=$(ls -d "$exp"/checkpoints/step-* 2>/dev/null | sort | tail -n 1 || true)
  if [ -z "$found" ]; then
    echo "run.sh: no checkpoint in $exp/checkpoints (run stage 2 first)" >&2
    exit 1
  fi
  echo "$found"
}

if run_stage 0; then
  log "stage 0: download ${train_subsets} dev-clean test-clean into $data"
  extra=()
  [ "$keep_archives" = true ] && extra+=(--keep-archives)
  # shellcheck disable=SC2086  # word splitting of the subset list is intended
  python "$here/download.py" --root "$data" --subsets $train_subsets dev-clean test-clean "${extra[@]}"
fi

if run_stage 1; then
  log "stage 1: manifests in $manifests"
  # shellcheck disable=SC2086
  python "$here/prepare.py" --root "$data" --out "$manifests" --train-subsets $train_subsets \
    --min-duration "$min_duration" --max-duration "$max_duration"
fi

if run_stage 2; then
  log "stage 2: train with $config (run folder $exp)"
  if [ "$gpus" -gt 1 ]; then
    launcher=(accelerate launch --multi_gpu --num_processes "$gpus" -m simvq_audio.cli)
  else
    launcher=(simvq-audio)
  fi
  "${launcher[@]}" train --config "$config" \
    data.train_manifest="$manifests/train.jsonl" \
    data.valid_manifest="$manifests/dev.jsonl" \
    logging.dir="$exp" \
    checkpoint.dir="$exp/checkpoints" \
    "${train_overrides[@]}"
fi

if run_stage 3; then
  checkpoint=$(latest_checkpoint)
  log "stage 3: evaluate $checkpoint (EMA weights) on test-clean"
  extra=()
  [ -n "$eval_files" ] && extra+=(--max-files "$eval_files")
  simvq-audio eval "$manifests/test.jsonl" --model "$checkpoint/ema" -o "$exp/eval-test-clean" "${extra[@]}"
fi

if run_stage 4; then
  checkpoint=$(latest_checkpoint)
  log "stage 4: export $checkpoint to $exp/model"
  simvq-audio export "$checkpoint" -o "$exp/model"
  log "done: model in $exp/model (use it with --model $exp/model)"
fi

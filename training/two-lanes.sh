#!/bin/bash
# How the shipped imagine-shapes was trained: every stage of `training.train`, in two one-thread lanes on a
# 2-core machine, each stage ended by a wall-clock cap (the learning-rate schedule follows the cap).
#   lane A: clip -> embed -> decoder
#   lane B: up_data -> up1 -> (waits for embed) clip_text -> text_embed -> prior -> up2, then gives the decoder a 2nd thread
# Resumable: rerun it and finished stages are skipped, unfinished ones resume from their checkpoints.
#   training/two-lanes.sh [OUT] [SEED]      (default training/runs/v2, 0), then the export, sweep and eval:
#   /usr/bin/python3 -m training.train --out OUT --stages export   (see training/README.md)
set -e
cd "$(dirname "$0")/.."
OUT=${1:-training/runs/v2}
SEED=${2:-0}
SETS="--set clip_steps=100000 --set clip_minutes=25 --set cliptext_steps=100000 --set cliptext_minutes=10
  --set prior_steps=1000000 --set prior_minutes=59 --set dec_steps=1000000 --set dec_minutes=88
  --set up1_steps=1000000 --set up1_minutes=40 --set up2_steps=1000000 --set up2_minutes=25"
T="/usr/bin/python3 -m training.train --out $OUT --seed $SEED --threads 1 $SETS"
mkdir -p "$OUT"
$T --stages data
( $T --stages clip,embed,decoder >> "$OUT/laneA.out" 2>&1 ) &
( $T --stages up_data,up1 >> "$OUT/laneB.out" 2>&1
  while [ ! -f "$OUT/embed.done" ]; do sleep 10; done
  $T --stages clip_text,text_embed,prior,up2 >> "$OUT/laneB.out" 2>&1
  echo 2 > "$OUT/threads.decoder" ) &
wait

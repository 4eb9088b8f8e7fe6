#!/bin/sh
# CI smoke test of the training recipe: a few steps of every stage on a tiny configuration, exported to
# ONNX in a temporary folder, the same for training.fast, plus the tokenizer/world/checker tests. ~2 minutes on 2 cores.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
OUT=$(mktemp -d /tmp/imagine-smoke.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
$PY -m training.tests
$PY -m training.train --tiny --out "$OUT" --threads 2
test -f "$OUT/export/manifest.json"
for f in text_encoder image_encoder prior decoder upsampler_1 upsampler_2; do test -s "$OUT/export/$f/model.onnx"; done
# the accelerated recipe, on CPU: every stage at once for a few seconds, packed, unpacked and exported
$PY -m training.fast --tiny --device cpu --out "$OUT/fast" --seconds 20 --workers 2 --pack "$OUT/fast-pack"
$PY -m training.fast --unpack "$OUT/fast-pack" --out "$OUT/fast-run"
$PY -m training.train --tiny --out "$OUT/fast-run" --stages export --export-dir "$OUT/fast-export"
for f in text_encoder image_encoder prior decoder upsampler_1 upsampler_2; do test -s "$OUT/fast-export/$f/model.onnx"; done
# the CPU-sized text phase: the text tower distilled through that run's prior
$PY -m training.fast --tiny --device cpu --out "$OUT/distill" --seconds 15 --workers 2 --roles text_distill --resume "$OUT/fast-run"
test -s "$OUT/distill/clip_text.pt" && test -f "$OUT/distill/clip_text.done"
# a run folder rebuilt from that package holds exactly the exported weights
$PY -m training.from_onnx --model "$OUT/fast-export" --out "$OUT/rebuilt" --config "$OUT/fast-run/config.json" --check "$OUT/fast-run"
echo "smoke test passed"

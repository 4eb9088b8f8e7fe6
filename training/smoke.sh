#!/bin/sh
# CI smoke test of the training recipe: a few steps of every stage on a tiny configuration, exported to
# ONNX in a temporary folder, plus the tokenizer/world/checker tests. ~1-2 minutes on 2 cores.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
OUT=$(mktemp -d /tmp/imagine-smoke.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
$PY -m training.tests
$PY -m training.train --tiny --out "$OUT" --threads 2
test -f "$OUT/export/manifest.json"
for f in text_encoder image_encoder prior decoder upsampler_1 upsampler_2; do test -s "$OUT/export/$f/model.onnx"; done
echo "smoke test passed"

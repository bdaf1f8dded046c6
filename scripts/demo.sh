#!/usr/bin/env bash
# The README demo: registry → health check → example models → real host-CPU profiling → dataset.
# Run it through `make demo` (which sets up .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step hwfarm devices list
step hwfarm devices check
step hwfarm zoo export all --out-dir demo_models
step hwfarm inspect demo_models/resnet8-cifar.onnx
step hwfarm profile demo_models/*.onnx --device host-cpu
step hwfarm dataset show
step hwfarm dataset export --format csv --out hwfarm-dataset.csv

cat <<TXT

Where the data went:
  hwfarm.db            SQLite dataset (devices, workloads + graphs, measurements with raw samples, jobs)
  hwfarm-dataset.csv   one row per measurement, for pandas/spreadsheets
  demo_models/         the ONNX files that were measured
Run the profile step again: the results come from the dataset (cached); add --force to re-measure.
TXT

#!/usr/bin/env bash
# The README demo: registry → health check → models → real host-CPU profiling → simulated
# devices → kernel dataset → predictor → predictions on a search space → a search → dataset export.
# Run it through `make demo` (which sets up .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
note() { printf '\n\033[2m# %s\033[0m\n' "$*"; }

note "The registry: the host CPU (real) and calibrated simulated devices (marked simulated)."
step hwfarm devices list
step hwfarm devices check host-cpu sim-raspi4 sim-adreno-gpu sim-edgetpu sim-cortex-m7

note "Example models, one model's layers, and real measurements on this machine's CPU."
step hwfarm zoo export all --out-dir demo_models
step hwfarm inspect demo_models/resnet8-cifar.onnx
step hwfarm profile demo_models/*.onnx --device host-cpu

note "The same models on simulated devices: a phone GPU and a Jetson (fp16), per-kernel breakdown in --json."
step hwfarm profile demo_models/*.onnx --device sim-adreno-gpu
step hwfarm profile demo_models/*.onnx --device sim-jetson
note "An int8-only accelerator refuses a float model, as its compiler would (exit 1):"
hwfarm profile demo_models/mlp.onnx --device sim-edgetpu || true

note "A kernel dataset on the simulated Raspberry Pi 4, its predictor, and predictions for models it never saw."
step hwfarm dataset build --device sim-raspi4 --budget 300
step hwfarm predictor train --device sim-raspi4 --space nb201
step hwfarm nas export --space nb201 --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|' --out demo_models/nb201-cell.onnx
step hwfarm nas export --space mobilenet_v2 --arch default --out demo_models/mobilenet_v2.onnx
step hwfarm predict demo_models/nb201-cell.onnx demo_models/mobilenet_v2.onnx --device sim-raspi4
note "…and what the device measures for them:"
step hwfarm profile demo_models/nb201-cell.onnx demo_models/mobilenet_v2.onnx --device sim-raspi4
note "The predictor against every network measured on the device: these two and the demo models (measured now), drawn too."
step hwfarm profile demo_models/mlp.onnx demo_models/resnet8-cifar.onnx demo_models/mobilenet-v1-0.25-128.onnx --device sim-raspi4
step hwfarm predictor eval --device sim-raspi4 --plot demo_models/eval-sim-raspi4.svg

if [ -f ../shared/data/nb201-accuracy/accuracy_200ep.csv ]; then
    note "Architecture search for the simulated Raspberry Pi 4: its predictor as the cost, NB201's accuracy table,
regularized evolution under 12 ms, the top 3 of the Pareto front then measured (plot: demo_models/nas-sim-raspi4/pareto.png)."
    step hwfarm nas search --space nb201 --device sim-raspi4 --max-latency-ms 12 --trials 500 --strategy evolution \
        --validate 3 --out demo_models/nas-sim-raspi4
fi

note "An int8-only accelerator: a kernel dataset of int8 .tflite kernels on the simulated Edge TPU, its predictor
(with the USB link's per-network boundary term), and an int8 MobileNetV2 predicted, then measured."
step hwfarm dataset build --device sim-edgetpu --budget 200
step hwfarm predictor train --device sim-edgetpu
step hwfarm nas export --space mobilenet_v2 --arch default --dtype int8 --out demo_models/mobilenet_v2-int8.tflite
step hwfarm predict demo_models/mobilenet_v2-int8.tflite --device sim-edgetpu
step hwfarm profile demo_models/mobilenet_v2-int8.tflite --device sim-edgetpu

if [ -f ../shared/data/nb201-latency/latency_ms.csv ]; then
    note "Few-shot transfer on real NB201 latencies: 10 measured cells of the Raspberry Pi 4 column."
    step hwfarm predictor bench --csv ../shared/data/nb201-latency/latency_ms.csv --space nb201 --target raspi4 \
        --shots 10,100 --seeds 2 --sources 1080ti_1,1080ti_32,1080ti_256,silver_4114,pixel3,samsung_s7,titanx_1,titanx_32,titanx_256,gold_6240 \
        --plot demo_models/transfer-raspi4.svg
fi

step hwfarm dataset show
step hwfarm dataset export --format csv --out hwfarm-dataset.csv

cat <<TXT

Where the data went:
  hwfarm.db             SQLite dataset (devices, workloads + graphs, measurements with raw samples, jobs, fusion rules)
  hwfarm-predictors/    predictor bundles (bundle.json + XGBoost JSON models), one folder per training run
  hwfarm-models/        the fusion-test models (small, kept); a build's kernel models are removed after it (--keep-models keeps them)
  hwfarm-dataset.csv    one row per measurement, for pandas/spreadsheets
  demo_models/          the ONNX and .tflite files that were measured, and the plots (*.svg: open in a browser)
Run a profile step again: the results come from the dataset (cached); add --force to re-measure.
TXT

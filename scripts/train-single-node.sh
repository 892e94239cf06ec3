#!/usr/bin/env bash
# The main job on one machine: `dtrain train` with one worker thread per core, LeNet, 20 epochs,
# the run folder under runs/. Extra flags go to `dtrain train` and win over these defaults:
#
#   scripts/train-single-node.sh
#   scripts/train-single-node.sh --model cnn-bn --epochs 50 --out runs/cnn-bn-long
#   scripts/train-single-node.sh --resume --out runs/lenet-2026-11-26T20-31-42
#
# The DTRAIN_* variables (DTRAIN_MODEL, DTRAIN_EPOCHS, DTRAIN_WORKERS, ...) set the same things.
# SIGINT/SIGTERM checkpoint and stop; the exit status is dtrain's (130 after SIGINT, 143 after
# SIGTERM).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# runs/ is under the checkout, wherever this is called from.
cd "$root"

cores=$(node -p 'require("os").availableParallelism()')
export DTRAIN_WORKERS=${DTRAIN_WORKERS:-$cores}
export DTRAIN_MODEL=${DTRAIN_MODEL:-lenet}
export DTRAIN_EPOCHS=${DTRAIN_EPOCHS:-20}
# No DTRAIN_OUT: dtrain names the folder runs/<model>-<UTC time> after the model it really trains.

# exec: signals reach dtrain itself, which checkpoints before it exits.
exec node --single-threaded-gc bin/dtrain.js train "$@"

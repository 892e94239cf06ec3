#!/usr/bin/env bash
# The accuracy effect of --wire-dtype on a real training run: the same job (same seed, data, model,
# workers) over loopback WebSockets with float32, float16 and bfloat16 on the wire, then a table of
# each run's validation and test results. Synthetic data unless DATA_DIR is set (real CIFAR-10).
#
#   scripts/wire-accuracy.sh                      # lenet, 3 epochs of 8,000 synthetic images, 2 workers
#   MODEL=cnn-bn EPOCHS=5 LIMIT_TRAIN=20000 scripts/wire-accuracy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${MODEL:-lenet}"
EPOCHS="${EPOCHS:-3}"
LIMIT_TRAIN="${LIMIT_TRAIN:-8000}"
LIMIT_TEST="${LIMIT_TEST:-2000}"
WORKERS="${WORKERS:-2}"
SEED="${SEED:-42}"
OUT="${OUT:-$(mktemp -d /tmp/wire-accuracy.XXXXXX)}"
mkdir -p "$OUT"
DATA=(--dataset synthetic)
[ -z "${DATA_DIR:-}" ] || DATA=(--dataset cifar10 --data-dir "$DATA_DIR")
export DTRAIN_TOKEN="wire-accuracy-$$-token"
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null || true; done' EXIT

for dtype in float32 float16 bfloat16; do
  log="$OUT/$dtype.log"
  # A reused OUT: this run replaces the last one (--overwrite), and its log starts empty, so the port
  # read below is this coordinator's.
  rm -f "$log" "$OUT/$dtype.workers.log"
  node --single-threaded-gc bin/dtrain.js coordinator --overwrite --host 127.0.0.1 --port 0 --no-http --no-plots "${DATA[@]}" --model "$MODEL" --epochs "$EPOCHS" \
    --limit-train "$LIMIT_TRAIN" --limit-test "$LIMIT_TEST" --seed "$SEED" --backend wasm --min-workers "$WORKERS" \
    --wire-dtype "$dtype" --out "$OUT/$dtype" --log-file "$log" &
  cpid=$!
  PIDS="$PIDS $cpid"
  until grep -q '"event":"listening"' "$log" 2>/dev/null; do
    kill -0 "$cpid" 2>/dev/null || { echo "wire-accuracy: the $dtype coordinator exited early" >&2; exit 1; }
    sleep 0.2
  done
  port="$(grep '"event":"listening"' "$log" | sed 's/.*"port":\([0-9]*\).*/\1/')"
  for _ in $(seq 1 "$WORKERS"); do
    node --single-threaded-gc bin/dtrain.js worker --connect "ws://127.0.0.1:$port" --backend wasm --log-level warn >>"$OUT/$dtype.workers.log" 2>&1 &
    PIDS="$PIDS $!"
  done
  wait "$cpid"
  echo "wire-accuracy: $dtype done" >&2
done

echo "| wire | epoch | train loss | train acc | val loss | val acc |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for dtype in float32 float16 bfloat16; do
  node -e '
    const h = require(process.argv[1]);
    for (const e of h.epochs) console.log(`| ${process.argv[2]} | ${e.epoch} | ${e.loss.toFixed(4)} | ${e.accuracy.toFixed(4)} | ${e.val_loss.toFixed(4)} | ${e.val_accuracy.toFixed(4)} |`);
  ' "$OUT/$dtype/history.json" "$dtype"
done
echo
echo "| wire | test loss | test accuracy | wall s |"
echo "| --- | ---: | ---: | ---: |"
for dtype in float32 float16 bfloat16; do
  node -e '
    const m = require(process.argv[1]);
    console.log(`| ${process.argv[2]} | ${m.test_loss.toFixed(4)} | ${m.test_accuracy.toFixed(4)} | ${m.wall_seconds} |`);
  ' "$OUT/$dtype/metrics.json" "$dtype"
done
echo "runs in $OUT" >&2

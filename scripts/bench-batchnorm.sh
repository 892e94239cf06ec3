#!/usr/bin/env bash
# Cost of synchronized BatchNorm: cnn-bn steps with --sync-bn exact and --sync-bn stats, with K
# worker threads in one process and with K worker processes over loopback WebSockets. Prints the
# mean step time (ms) over the steps after the first WARMUP, per configuration.
#   scripts/bench-batchnorm.sh [K=2] [STEPS=30] [BACKEND=wasm] [BATCH=32]
set -euo pipefail
K=${1:-2}; STEPS=${2:-30}; BACKEND=${3:-wasm}; BATCH=${4:-32}; WARMUP=5
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
common=(--model cnn-bn --dataset synthetic --limit-train 4000 --limit-test 50 --batch-size "$BATCH" --max-steps "$STEPS" --backend "$BACKEND" --no-plots)
mean_step() { node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return {}; } });
  const ms = lines.filter((l) => l.event === "step").slice(Number(process.argv[2])).map((l) => l.ms);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  const sd = Math.sqrt(ms.reduce((a, b) => a + (b - mean) ** 2, 0) / ms.length);
  console.log(`${mean.toFixed(1)} ms/step (sd ${sd.toFixed(1)}, ${ms.length} steps)`);' "$1" "$WARMUP"; }
for mode in exact stats; do
  node --single-threaded-gc bin/dtrain.js train "${common[@]}" --workers "$K" --sync-bn "$mode" --out "$tmp/in-$mode" --log-file "$tmp/in-$mode.log" >/dev/null
  echo "in-process  K=$K $BACKEND batch $BATCH --sync-bn $mode: $(mean_step "$tmp/in-$mode.log")"
  echo "bench-token" > "$tmp/token"
  timeout 300 node --single-threaded-gc bin/dtrain.js coordinator "${common[@]}" --port 0 --host 127.0.0.1 --min-workers "$K" --token-file "$tmp/token" --sync-bn "$mode" --out "$tmp/ws-$mode" --log-file "$tmp/ws-$mode.log" &
  coord=$!
  for _ in $(seq 100); do port=$(node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) { try { const j = JSON.parse(l); if (j.event === "listening") { console.log(j.port); break; } } catch {} }' "$tmp/ws-$mode.log" 2>/dev/null || true); [ -n "$port" ] && break; sleep 0.2; done
  [ -n "$port" ] || { echo "bench-batchnorm: the coordinator never logged 'listening' (see $tmp/ws-$mode.log)" >&2; kill "$coord" 2>/dev/null; exit 1; }
  for _ in $(seq "$K"); do node --single-threaded-gc bin/dtrain.js worker --connect "ws://127.0.0.1:$port" --token-file "$tmp/token" --backend "$BACKEND" >/dev/null 2>&1 & done
  wait "$coord" || true
  echo "WebSocket   K=$K $BACKEND batch $BATCH --sync-bn $mode: $(mean_step "$tmp/ws-$mode.log")"
  # After --max-steps the workers stay to reconnect: stop them.
  kill $(jobs -p) 2>/dev/null || true
  wait || true
done

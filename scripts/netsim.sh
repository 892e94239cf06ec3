#!/usr/bin/env bash
# A measured network model: the coordinator and K=4 workers, each in its own network namespace on
# one Linux bridge (in a namespace of its own), every link shaped with tc to the same rate both ways,
# trained for a few steps per model, wire dtype and bandwidth. Writes docs/netsim.json, then renders
# docs/netsim.md and its charts (docs/images/netsim-*.png) from it (scripts/netsim-report.ts).
#
# The 0.2 ms one-way delay is emulated with netem where the kernel has it (sch_netem). Where it does
# not (this project's machines: no netem, no modules to load), the links are shaped with tbf alone
# and the delay enters the model as two one-way trips per step (weights out, gradients back); the
# JSON says which ("delayEmulated").
#
# A benchmark, not a test: it needs root and iproute2, and is not run in CI. It only creates
# namespaces named dtns<pid>-*, addresses in 10.77.0.0/24, and removes all of them on exit.
#
#   sudo scripts/netsim.sh                 # every model × float32/float16/bfloat16 × 1 and 10 Gbit/s
#   sudo scripts/netsim.sh --quick         # mlp and lenet, fewer steps: checks the tooling
#   options: --steps N  --warmup N  --models "mlp lenet"  --dtypes "float32 float16"  --rates "1gbit 10gbit"
#            --out FILE.json  --keep-logs
# Each run trains --steps steps (120) and is measured over the steps after the first --warmup (20):
# JIT compilation, the first connections and the first frames of each size are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=120
WARMUP=20
MODELS="mlp lenet cnn-dropout cnn-bn"
DTYPES="float32 float16 bfloat16"
RATES="1gbit 10gbit"
WORKERS=4
DELAY=0.2ms
BATCH_PER_WORKER=32
OUT=docs/netsim.json
KEEP_LOGS=0
QUICK=0
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; STEPS=12; WARMUP=4; MODELS="mlp lenet"; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    --dtypes) DTYPES="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep-logs) KEEP_LOGS=1; shift ;;
    *) echo "netsim: unknown option $1" >&2; exit 2 ;;
  esac
done

case "$STEPS:$WARMUP" in :*|*:|*[!0-9:]*) echo "netsim: --steps and --warmup take whole numbers, got $STEPS and $WARMUP" >&2; exit 2 ;; esac
if [ "$WARMUP" -ge "$STEPS" ]; then echo "netsim: --warmup ($WARMUP) must be below --steps ($STEPS)" >&2; exit 2; fi
if [ "$(id -u)" != 0 ]; then echo "netsim: needs root (network namespaces and tc)" >&2; exit 2; fi
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "netsim: installing iproute2" >&2
  apt-get install -y iproute2 >/dev/null || { apt-get update >/dev/null && apt-get install -y iproute2 >/dev/null; }
fi

PREFIX="dtns$$"
BR="$PREFIX-br"
NODES="c"
for i in $(seq 1 "$WORKERS"); do NODES="$NODES w$i"; done
WORK="$(mktemp -d /tmp/netsim.XXXXXX)"
PIDS=""
export DTRAIN_TOKEN="netsim-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cleanup() {
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  for node in $NODES; do ip netns del "$PREFIX-$node" 2>/dev/null || true; done
  ip netns del "$BR" 2>/dev/null || true
  if [ "$KEEP_LOGS" = 1 ]; then echo "netsim: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip_of() { if [ "$1" = c ]; then echo 10.77.0.1; else echo "10.77.0.1${1#w}"; fi; }

# One bridge in its own namespace; each node gets a veth pair: eth0 in its namespace, v-<node> on the bridge.
ip netns add "$BR"
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
ip -n "$BR" link set lo up
for node in $NODES; do
  ns="$PREFIX-$node"
  ip netns add "$ns"
  ip -n "$BR" link add "v-$node" type veth peer name eth0 netns "$ns"
  ip -n "$BR" link set "v-$node" master br0 up
  ip -n "$ns" addr add "$(ip_of "$node")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

# Each node's link runs at $1 both ways: its eth0 egress (upload, with the one-way delay when netem
# exists) and the bridge port's egress (download). tbf's bucket holds 1 ms at the rate (at least 64
# KiB, one GSO segment), as a NIC's would.
NETEM=0
if ip netns exec "$BR" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then NETEM=1; ip netns exec "$BR" tc qdisc del dev lo root; fi
[ "$NETEM" = 1 ] || echo "netsim: no netem in this kernel: shaping with tbf, the ${DELAY} delay is added in the model" >&2
shape() {
  local bits burst
  bits=$(( ${1%gbit} * 1000000000 ))
  burst=$(( bits / 8 / 1000 )); [ "$burst" -ge 65536 ] || burst=65536
  for node in $NODES; do
    if [ "$NETEM" = 1 ]; then
      ip netns exec "$PREFIX-$node" tc qdisc replace dev eth0 root netem delay "$DELAY" rate "$1" limit 100000
      ip netns exec "$BR" tc qdisc replace dev "v-$node" root netem rate "$1" limit 100000
    else
      ip netns exec "$PREFIX-$node" tc qdisc replace dev eth0 root tbf rate "$1" burst "$burst" latency 50ms
      ip netns exec "$BR" tc qdisc replace dev "v-$node" root tbf rate "$1" burst "$burst" latency 50ms
    fi
  done
}

iface_bytes() { ip netns exec "$PREFIX-c" sh -c 'echo $(( $(cat /sys/class/net/eth0/statistics/tx_bytes) + $(cat /sys/class/net/eth0/statistics/rx_bytes) ))'; }

wait_for_line() { # file pattern timeout_s
  local end=$(( $(date +%s) + $3 ))
  while ! grep -q "$2" "$1" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "netsim: timed out waiting for $2 in $1" >&2; tail -5 "$1" >&2 || true; return 1; fi
    sleep 0.2
  done
}

MANIFEST="$WORK/runs.jsonl"
: > "$MANIFEST"
run_one() { # model dtype rate workers
  local model="$1" dtype="$2" rate="$3" k="$4"
  local name="$model-$dtype-$rate-k$k" log="$WORK/$model-$dtype-$rate-k$k.log"
  shape "$rate"
  local load_start before after started ended wpids=""
  load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
  before="$(iface_bytes)"
  started="$(date +%s.%N)"
  ip netns exec "$PREFIX-c" node --single-threaded-gc bin/dtrain.js coordinator --host 10.77.0.1 --port 8787 --no-http --no-plots \
    --dataset synthetic --limit-train "$(( STEPS * BATCH_PER_WORKER * WORKERS ))" --limit-test 100 --model "$model" --backend wasm \
    --batch-per-worker "$BATCH_PER_WORKER" --max-steps "$STEPS" --min-workers "$k" --wire-dtype "$dtype" \
    --out "$WORK/run-$name" --log-file "$log" >"$WORK/$name.coordinator.out" 2>&1 &
  local cpid=$!
  PIDS="$PIDS $cpid"
  wait_for_line "$log" '"event":"listening"' 60
  for i in $(seq 1 "$k"); do
    ip netns exec "$PREFIX-w$i" node --single-threaded-gc bin/dtrain.js worker --connect ws://10.77.0.1:8787 --backend wasm --name "w$i" --log-level warn \
      >"$WORK/$name.w$i.log" 2>&1 &
    wpids="$wpids $!"
    PIDS="$PIDS $!"
  done
  local code=0
  wait "$cpid" || code=$?
  ended="$(date +%s.%N)"
  # With --max-steps the coordinator stops (not finishes): the workers would reconnect, so stop them.
  for pid in $wpids; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  after="$(iface_bytes)"
  if [ "$code" != 0 ]; then echo "netsim: $name: coordinator exited $code" >&2; tail -5 "$log" >&2 || true; return 1; fi
  printf '{"model":"%s","dtype":"%s","rate":"%s","workers":%s,"log":"%s","ifaceBytes":%s,"loadStart":"%s","loadEnd":"%s","wallSeconds":%s}\n' \
    "$model" "$dtype" "$rate" "$k" "$log" "$((after - before))" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(awk "BEGIN { print $ended - $started }")" >> "$MANIFEST"
  echo "netsim: $name done ($(grep -c '"event":"step"' "$log") steps)" >&2
}

BEGAN="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for model in $MODELS; do
  # One worker on a fast link: the compute term, with as little contention as this machine allows.
  run_one "$model" float32 10gbit 1
  for rate in $RATES; do
    for dtype in $DTYPES; do run_one "$model" "$dtype" "$rate" "$WORKERS"; done
  done
done

npx tsx scripts/netsim-summarize.ts --manifest "$MANIFEST" --out "$OUT" --began "$BEGAN" --delay "$DELAY" --delay-emulated "$NETEM" \
  --batch-per-worker "$BATCH_PER_WORKER" --steps "$STEPS" --warmup "$WARMUP" --quick "$QUICK" --command "scripts/netsim.sh${ARGS:+ $ARGS}"
npx tsx scripts/netsim-report.ts --json "$OUT"

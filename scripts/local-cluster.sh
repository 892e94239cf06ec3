#!/usr/bin/env bash
# A coordinator and N workers as plain processes on this machine, over loopback, without Docker:
# the quickest way to watch the distributed path (handshake, steps, joins and leaves) end to end.
#
#   scripts/local-cluster.sh N [coordinator flags...]
#   scripts/local-cluster.sh 2 --dataset synthetic --limit-train 3200 --epochs 1
#
# A random token goes into a temp file that all of them read. Each process logs its JSON lines
# to LOG_DIR/<name>.log (jq-able, unprefixed) and this terminal shows them prefixed with the name.
# Ctrl-C (or SIGTERM) sends one SIGTERM to each process, so the coordinator checkpoints, then
# stops whatever is left. The exit status is the coordinator's.
#
# Environment: DTRAIN_PORT (default: a free port), DTRAIN_BACKEND (workers' backend),
# LOCAL_CLUSTER_LOG_DIR (default: a new temp folder, kept afterwards).
set -euo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
[[ $1 =~ ^[1-9][0-9]*$ ]] || { echo "local-cluster: N must be a positive number of workers, got \"$1\"" >&2; usage; }
workers=$1
shift

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dtrain=("node" "--single-threaded-gc" "$root/bin/dtrain.js")
log_dir=${LOCAL_CLUSTER_LOG_DIR:-$(mktemp -d -t dtrain-local.XXXXXX)}
mkdir -p "$log_dir"
secret_dir=$(mktemp -d -t dtrain-token.XXXXXX)
token_file="$secret_dir/token"
(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$token_file")

port=${DTRAIN_PORT:-$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")}

# Job control puts every background process in its own process group: Ctrl-C then reaches only
# this script, which forwards exactly one SIGTERM (a second one makes the coordinator skip its
# checkpoint), and a whole group can be killed at the end.
set -m

declare -A pid_of=()
followers=()

# start NAME CMD...: runs CMD with its output in LOG_DIR/NAME.log, shown here with a prefix.
start() {
  local name=$1
  shift
  : >"$log_dir/$name.log"
  "$@" </dev/null >"$log_dir/$name.log" 2>&1 &
  pid_of[$name]=$!
  (tail -n +1 -F "$log_dir/$name.log" 2>/dev/null | sed -u "s/^/[$name] /") &
  followers+=("$!")
  disown "$!" # no "Terminated" notice when it is stopped at the end
}

alive() { kill -0 "$1" 2>/dev/null; }

stopping=0
stop_all() {
  ((stopping)) && return
  stopping=1
  local name
  for name in "${!pid_of[@]}"; do
    alive "${pid_of[$name]}" && kill -TERM "${pid_of[$name]}" 2>/dev/null || true
  done
}

cleanup() {
  local name pid deadline=$((SECONDS + 30))
  # Give the coordinator time to finish its step and write the checkpoint, then insist.
  for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$pid"; then
      echo "local-cluster: $name (pid $pid) still running after 30 s: killing its process group" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  sleep 0.3 # let the followers print the last lines
  for pid in "${followers[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  rm -rf "$secret_dir"
  echo "local-cluster: logs in $log_dir" >&2
}
trap 'stop_all' INT TERM
trap 'cleanup' EXIT

echo "local-cluster: coordinator on 127.0.0.1:$port, $workers worker(s), logs in $log_dir" >&2
start coordinator "${dtrain[@]}" coordinator --host 127.0.0.1 --port "$port" --min-workers "$workers" --token-file "$token_file" "$@"
for ((i = 1; i <= workers; i++)); do
  start "worker-$i" "${dtrain[@]}" worker --connect "ws://127.0.0.1:$port" --token-file "$token_file" --name "worker-$i"
done

# Wait for the coordinator. Workers that fail (exit 1: refused) are reported; when none is left
# while the coordinator still waits, there is nothing to wait for.
declare -A name_of=()
for name in "${!pid_of[@]}"; do name_of[${pid_of[$name]}]=$name; done
coordinator_status=
failed=0
while [[ -z $coordinator_status ]]; do
  set +e
  waited=
  wait -n -p waited "${!name_of[@]}"
  status=$?
  set -e
  [[ -z ${waited:-} ]] && continue # interrupted by a signal: the trap ran; keep waiting
  name=${name_of[$waited]}
  unset "name_of[$waited]"
  if [[ $name == coordinator ]]; then
    coordinator_status=$status
  elif ((status != 0)); then
    echo "local-cluster: $name exited with status $status" >&2
    failed=$((failed + 1))
    if ((failed == workers && !stopping)); then
      echo "local-cluster: every worker failed; stopping the coordinator" >&2
      stop_all
    fi
  fi
done
# The coordinator closes every connection with "finished"; workers then exit on their own. One that
# ended otherwise (a refused flag, an --out that holds a run) leaves them retrying: stop them now.
((coordinator_status == 0)) || stop_all
exit "$coordinator_status"

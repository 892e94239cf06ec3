#!/usr/bin/env bash
# End-to-end test of docker-compose.yml on Docker Swarm, on a single-node swarm:
#
#   sudo scripts/swarm-e2e.sh [--install-deps]
#
#  1. Starts dockerd in a temp folder if no daemon answers (and stops only that one at the end),
#     with the same flags as compose-e2e.sh (--iptables=false --ip-forward=false --ip-masq=false).
#  2. Makes the base image without a registry (scripts/e2e-lib.sh) and builds the app image.
#  3. `docker swarm init --advertise-addr 127.0.0.1` unless the daemon is already a swarm manager.
#  4. `docker stack deploy -c docker-compose.yml` on synthetic data with 2 workers and checks what
#     swarm made of it: an overlay network, the token as a swarm secret, the coordinator pinned by
#     its placement constraint (a node label here) with endpoint mode dnsrr. Then, while it
#     trains: the coordinator's port, published in host mode by docker-compose.publish.yml,
#     serves /healthz and the browser worker's page and script; `docker service scale` to 3
#     workers (a third worker_joined); SIGKILL to a worker task's process (swarm starts a new
#     task, which joins); and training goes on to the end: run_finished, every task Complete.
#  5. Tears down the stack, its volumes and secret, the node label, the swarm if it made it, the
#     images it built, and the daemon it started.
#
# --install-deps: apt-get install docker.io when dockerd is missing (needs root).
# Environment: E2E_LIMIT_TRAIN (synthetic training images, default 40000), E2E_KEEP=1 (leave it
# all up for a look), E2E_STORAGE_DRIVER (as in compose-e2e.sh).
# Exit status: 0 when every check passed; 1 with a "FAIL:" line naming the check otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
e2e_name=swarm-e2e
stack=dtrainsw$$
image=dtrain:swarm-e2e-$$
# shellcheck source=scripts/e2e-lib.sh
. "$root/scripts/e2e-lib.sh"
limit_train=${E2E_LIMIT_TRAIN:-40000}
made_swarm=0
made_gwbridge=0
node_id=

# ---------------------------------------------------------------------------------------------
# Teardown, on every exit
stack_containers() { docker ps -aq --filter "label=com.docker.stack.namespace=$stack"; }

teardown() {
  local status=$?
  set +e
  if [[ ${E2E_KEEP:-0} == 1 && -n $work ]]; then
    log "E2E_KEEP=1: leaving everything up. DOCKER_HOST=${DOCKER_HOST:-} ; files in $work"
    log "  docker stack ps $stack ; docker service logs ${stack}_coordinator"
    exit "$status"
  fi
  if [[ -n $node_id ]]; then
    if ((status != 0)); then
      log "tasks and logs of the stack (last 40 lines of each service):"
      docker stack ps --no-trunc "$stack" >&2 2>/dev/null
      for s in coordinator worker; do docker service logs --raw --tail 40 "${stack}_$s" >&2 2>/dev/null; done
    fi
    log "teardown: docker stack rm, then its volumes"
    docker stack rm "$stack" >/dev/null 2>&1
    # stack rm returns at once; volumes can go once the containers have.
    for _ in $(seq 1 150); do [[ -z $(stack_containers) ]] && break; sleep 0.2; done
    docker volume rm "${stack}_runs" "${stack}_cifar-cache" >/dev/null 2>&1
    for _ in $(seq 1 50); do docker network inspect "${stack}_dtrain" >/dev/null 2>&1 || break; sleep 0.2; done
    if ((made_swarm)); then
      log "teardown: docker swarm leave --force"
      docker swarm leave --force >/dev/null 2>&1
    else
      docker node update --label-rm dtrain.coordinator "$node_id" >/dev/null 2>&1
    fi
    # The bridge that connects swarm containers to their host outlives the swarm.
    ((made_gwbridge)) && [[ -z $dockerd_pid ]] && docker network rm docker_gwbridge >/dev/null 2>&1
  fi
  e2e_teardown_docker "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM
e2e_setup "$@"
e2e_require_tools dockerd:docker.io

# ---------------------------------------------------------------------------------------------
# 1-2. A Docker daemon, the base image and the app image
e2e_start_daemon
build_started=$SECONDS
log "docker build (npm ci against package-lock.json, from $base_image)"
docker build --quiet --network host --build-arg "BASE_IMAGE=$base_image" -t "$image" "$root" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "docker build failed"; }
log "image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'), built in $((SECONDS - build_started)) s"
e2e_check_image

# ---------------------------------------------------------------------------------------------
# 3. A single-node swarm
if ! ip link show docker_gwbridge >/dev/null 2>&1; then
  made_gwbridge=1
  made_links+=(docker_gwbridge)
fi
case $(docker info -f '{{.Swarm.LocalNodeState}}') in
  inactive)
    log "docker swarm init --advertise-addr 127.0.0.1"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init failed"
    made_swarm=1
    ;;
  active)
    [[ $(docker info -f '{{.Swarm.ControlAvailable}}') == true ]] || fail "this daemon is a swarm worker: run the test on a manager"
    log "using the swarm this daemon is already part of"
    ;;
  *) fail "the daemon's swarm state is $(docker info -f '{{.Swarm.LocalNodeState}}')" ;;
esac
node_id=$(docker info -f '{{.Swarm.NodeID}}')
docker node update --label-add dtrain.coordinator=true "$node_id" >/dev/null || fail "cannot label node $node_id"

# ---------------------------------------------------------------------------------------------
# 4. The stack
# Only the client reads the secret's file (and sends it to the managers' store): it may be 0400.
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$work/token"
chmod 400 "$work/token"
# `docker stack deploy` interpolates from its own environment (it does not read .env).
export DTRAIN_IMAGE=$image DTRAIN_TOKEN_SECRET_FILE=$work/token DTRAIN_RUN_NAME=swarm-e2e \
  DTRAIN_DATASET=synthetic DTRAIN_MODEL=lenet DTRAIN_EPOCHS=1 DTRAIN_LIMIT_TRAIN=$limit_train \
  DTRAIN_LIMIT_TEST=500 DTRAIN_MIN_WORKERS=2 DTRAIN_CHECKPOINT_EVERY=50 DTRAIN_STEP_TIMEOUT=30 \
  DTRAIN_WORKER_REPLICAS=2 DTRAIN_COORDINATOR_CONSTRAINT='node.labels.dtrain.coordinator == true' \
  DTRAIN_PUBLISH_PORT=$(node -e "const s = require('net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })")

log "docker stack deploy -c docker-compose.yml -c docker-compose.publish.yml $stack ($limit_train synthetic images, lenet, 1 epoch)"
docker stack deploy --resolve-image never -c "$root/docker-compose.yml" -c "$root/docker-compose.publish.yml" "$stack" >"$work/deploy.log" 2>&1 ||
  { cat "$work/deploy.log" >&2; fail "docker stack deploy failed"; }

[[ $(docker network inspect -f '{{.Driver}} {{.Scope}}' "${stack}_dtrain") == "overlay swarm" ]] ||
  fail "network ${stack}_dtrain is $(docker network inspect -f '{{.Driver}} {{.Scope}}' "${stack}_dtrain"), not an overlay"
docker secret inspect "${stack}_dtrain_token" >/dev/null 2>&1 || fail "no swarm secret ${stack}_dtrain_token"
spec=$(docker service inspect -f '{{.Spec.EndpointSpec.Mode}} {{json .Spec.TaskTemplate.Placement.Constraints}}' "${stack}_coordinator")
[[ $spec == 'dnsrr ["node.labels.dtrain.coordinator == true"]' ]] || fail "the coordinator service has endpoint mode and constraints $spec"
log "overlay network, swarm secret, coordinator pinned by node label with endpoint mode dnsrr"

# Every task's lines (count and wait_for in scripts/e2e-lib.sh read them).
coordinator_logs() { docker service logs --raw "${stack}_coordinator" 2>/dev/null; }
# running_workers: the worker tasks' containers that are running now.
running_workers() { docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_worker" --filter status=running; }

wait_for listening 1 120
# http_get PATH: the body of the coordinator's PATH through the published port (Node's fetch: curl
# may be missing).
http_get() {
  node -e "fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error('HTTP ' + r.status); process.stdout.write(await r.text()); }).catch((e) => { console.error(e.message); process.exit(1); })" \
    "http://127.0.0.1:$DTRAIN_PUBLISH_PORT$1"
}
http_get /healthz >/dev/null || fail "no /healthz on the published port $DTRAIN_PUBLISH_PORT"
page=$(http_get /worker) || fail "no /worker page on the published port"
grep -q '/worker/app.js' <<<"$page" || fail "the /worker page does not load its script"
! grep -qF "$(cat "$work/token")" <<<"$page" || fail "the /worker page holds the token"
# Bundled by esbuild inside the container, on this first request.
(($(http_get /worker/app.js | wc -c) > 100000)) || fail "/worker/app.js is not the bundled browser worker"
log "dashboard, /healthz and the browser worker's page (bundled in the container) on the published port $DTRAIN_PUBLISH_PORT"
wait_for worker_joined 2 120
wait_for step 1 60
log "2 workers joined by service name over the overlay network; training"

still_training "scale"
log "docker service scale ${stack}_worker=3"
docker service scale --detach "${stack}_worker=3" >/dev/null 2>&1 || fail "docker service scale failed"
wait_for worker_joined 3 90
log "a third worker joined mid-run"

still_training "worker crash"
victim=$(running_workers | head -1)
[[ -n $victim ]] || fail "no running worker container"
joined=$(count worker_joined)
log "SIGKILL to worker task container ${victim:0:12}'s process"
kill -KILL "$(host_pid "$victim")"
deadline=$((SECONDS + 90))
until (($(count worker_joined) > joined)) && (($(running_workers | grep -cv "^${victim:0:12}") >= 3)); do
  ((SECONDS < deadline)) || fail "no new worker task joined within 90 s of the kill ($(running_workers | wc -l) running)"
  sleep 1
done
[[ $(docker inspect -f '{{.State.ExitCode}}' "$victim") == 137 ]] || fail "the killed task exited with $(docker inspect -f '{{.State.ExitCode}}' "$victim"), not 137"
log "swarm replaced the killed task (restart_policy on-failure); the new one joined"

steps=$(count step)
wait_for step $((steps + 5)) 60
log "training goes on: $(count step) steps so far; waiting for the run to finish"
wait_for run_finished 1 300
deadline=$((SECONDS + 60))
while [[ -n $(docker ps -q --filter "label=com.docker.stack.namespace=$stack") ]]; do
  ((SECONDS < deadline)) || fail "containers still running 60 s after run_finished: $(docker stack ps "$stack")"
  sleep 1
done
# Every task, replaced ones included (their names start with "\_ "). A node's agent reports a task's
# end to the managers after its container has gone, so the states may lag the containers: poll.
tasks_complete() {
  states=$(docker stack ps --format '{{.Name}} {{.CurrentState}}' "$stack")
  grep -q "^${stack}_coordinator.1 Complete" <<<"$states" && (($(grep -c "^${stack}_worker\.[0-9]* Complete" <<<"$states") >= 3))
}
deadline=$((SECONDS + 30))
until tasks_complete; do
  ((SECONDS < deadline)) || fail "30 s after the containers exited, not the coordinator's task and 3 worker tasks Complete: $(tr '\n' ';' <<<"$states")"
  sleep 1
done
coordinator_logs | grep '"event":"run_finished"' | tail -1 | grep -o '"test_accuracy":[0-9.]*' >&2 || true
log "run_finished; the coordinator and 3 workers exited 0 (tasks Complete)"

#!/usr/bin/env bash
# A master + worker pair for sd-webui-distributed (stable-diffusion-webui-distributed) on one
# harness WebUI, for test_distributed_worker_share_is_relit_and_keeps_extras.
#
#   HARNESS=/work/harness [WEBUI=a1111|forge|forge-classic|reforge] tests/e2e/extensions/distributed_pair.sh start|stop
#
# start: writes the master's distributed-config.json (in its extension folder, the default
#        --distributed-config) naming one worker at 127.0.0.1:$WORKER_PORT, then starts the worker:
#        a second server from the same checkout and venv on $WORKER_PORT with its own --data-dir
#        ($WORKER_DATA; its extensions/ holds only a symlink to the master's IC Light), and waits
#        for its API. Then (re)start the master ($HARNESS/$WEBUI/start.sh): sd-webui-distributed
#        reads the config only at start, and a master started without it writes a fresh one
#        (master only) over this file when it stops.
# stop:  stops the worker (by its pid file only).
# Env: HARNESS (required), WEBUI (a1111), WORKER_PORT (7865), WORKER_DATA ($HARNESS/$WEBUI-worker-data),
#      START_TIMEOUT (s, 900). Log: $HARNESS/$WEBUI-worker.log, pid: $HARNESS/$WEBUI-worker.pid.
# Two CPU servers need ~12 GiB: move ControlNet out of the master's extensions/ first on 24 GiB.
set -euo pipefail
: "${HARNESS:?set HARNESS to the harness folder}"
WEBUI_NAME=${WEBUI:-a1111}
case $WEBUI_NAME in  # the prefix of the variables the harness's env.sh sets (A1111_PY, FORGE_ARGS, ...)
  a1111) PFX=A1111 ;; forge) PFX=FORGE ;; forge-classic) PFX=FORGE_CLASSIC ;; reforge) PFX=REFORGE ;;
  *) echo "distributed_pair.sh: unknown WEBUI '$WEBUI_NAME'" >&2; exit 2 ;;
esac
WORKER_PORT=${WORKER_PORT:-7865}
WORKER_DATA=${WORKER_DATA:-$HARNESS/$WEBUI_NAME-worker-data}
PIDFILE=$HARNESS/$WEBUI_NAME-worker.pid LOG=$HARNESS/$WEBUI_NAME-worker.log
WEBUI=$HARNESS/$WEBUI_NAME/webui
DIST=$WEBUI/extensions/stable-diffusion-webui-distributed

start() {
  [ -d "$DIST" ] || { echo "distributed_pair.sh: $DIST is missing (install.sh ... distributed)" >&2; exit 1; }
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "distributed_pair.sh: worker already running, pid $(cat "$PIDFILE")" >&2; exit 1
  fi
  # avg_ipm on both: no benchmark at start (it would run 512x512 x20 steps on each).
  # complement_production off: the worker makes exactly its share of the batch, no extra images.
  cat >"$DIST/distributed-config.json" <<EOF
{
  "workers": [
    {"master": {"master": true, "avg_ipm": 20}},
    {"worker1": {"address": "127.0.0.1", "port": $WORKER_PORT, "avg_ipm": 20}}
  ],
  "benchmark_payload": {"prompt": "A herd of cows grazing at the bottom of a sunny valley",
                        "negative_prompt": "", "steps": 20, "width": 512, "height": 512, "batch_size": 1},
  "job_timeout": 60,
  "enabled": true,
  "complement_production": false,
  "step_scaling": false
}
EOF
  echo "distributed_pair.sh: wrote $DIST/distributed-config.json (worker 127.0.0.1:$WORKER_PORT)"
  # the worker runs IC Light only (same code as the master's), not sd-webui-distributed itself
  mkdir -p "$WORKER_DATA/extensions"
  [ -e "$WORKER_DATA/extensions/sd-webui-ic-light" ] || ln -s "$WEBUI/extensions/sd-webui-ic-light" "$WORKER_DATA/extensions/sd-webui-ic-light"
  # env.sh's environment and args (offline caches, --api --use-cpu all ...) on the worker's port;
  # not start.sh: that holds $HARNESS/server.lock (one server at a time), which the master needs.
  (
    export "${PFX}_PORT=$WORKER_PORT"
    . "$HARNESS/$WEBUI_NAME/env.sh"
    py_var="${PFX}_PY" args_var="${PFX}_ARGS[@]"
    cd "$WEBUI"
    setsid "${!py_var}" launch.py "${!args_var}" --data-dir "$WORKER_DATA" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  )
  local pid t0; pid=$(cat "$PIDFILE"); t0=$(date +%s)
  echo "distributed_pair.sh: worker pid $pid, log $LOG"
  until curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$WORKER_PORT/sdapi/v1/sd-models"; do
    kill -0 "$pid" 2>/dev/null || { echo "distributed_pair.sh: the worker exited; log tail:" >&2; tail -n 40 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; }
    [ $(( $(date +%s) - t0 )) -lt "${START_TIMEOUT:-900}" ] || { echo "distributed_pair.sh: worker not up; stop it with: $0 stop" >&2; exit 1; }
    sleep 2
  done
  echo "distributed_pair.sh: worker up after $(( $(date +%s) - t0 ))s: http://127.0.0.1:$WORKER_PORT"
}

stop() {  # the worker's process group (setsid above), by its pid file only
  [ -f "$PIDFILE" ] || { echo "distributed_pair.sh: no worker pid file"; return 0; }
  local pid; pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
  fi
  rm -f "$PIDFILE"
  echo "distributed_pair.sh: worker pid $pid stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac

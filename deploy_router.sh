#!/usr/bin/env bash
# Start the local router on the seed's port, without Docker: mictlanx-router-0 on 60666,
# in front of the peers that ./deploy_peer.sh started (24000 and 24001).
#
#   ./deploy_peer.sh && ./deploy_router.sh   # (re)start, wait until the router sees every peer
#   ./deploy_router.sh stop                  # stop the router (./deploy_peer.sh stop for the peers)
#
# Clients then use mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0
# Settings, from the environment:
#   MICTLANX_SYNC        the command (default: mictlanx-sync on PATH, else ./.venv/bin/mictlanx-sync)
#   MICTLANX_HOST        bind address (default 127.0.0.1)
#   MICTLANX_ROUTER_PORT router port (default 60666)
#   MICTLANX_PEER_PORTS  the peers' ports, as for deploy_peer.sh (default "24000 24001")
#   MICTLANX_PEERS       the peers as a MictlanX URI (default: built from MICTLANX_PEER_PORTS)
#   MICTLANX_DATA_DIR    data, logs and pid files (default ./mictlanx-data)
set -euo pipefail

HOST="${MICTLANX_HOST:-127.0.0.1}"
PORT="${MICTLANX_ROUTER_PORT:-60666}"
PORTS="${MICTLANX_PEER_PORTS:-24000 24001}"
DATA="${MICTLANX_DATA_DIR:-./mictlanx-data}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${MICTLANX_SYNC:-}" ]; then CMD="$MICTLANX_SYNC"
elif command -v mictlanx-sync >/dev/null 2>&1; then CMD="mictlanx-sync"
elif [ -x "$HERE/.venv/bin/mictlanx-sync" ]; then CMD="$HERE/.venv/bin/mictlanx-sync"
else echo "deploy_router.sh: mictlanx-sync not found; pip install 'mictlanx-sync[server]'" >&2; exit 1
fi

specs=()
i=0
for port in $PORTS; do specs+=("mictlanx-peer-$i@$HOST:$port"); i=$((i + 1)); done
PEERS="${MICTLANX_PEERS:-mictlanx://$(IFS=,; echo "${specs[*]}")/?protocol=http}"
WANT="$i"

# wait_healthy URL N PID: while PID runs, until the router's /health reports N available peers (30 s at most).
wait_healthy() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys, time, urllib.request
url, want = sys.argv[1], int(sys.argv[2])
pid = int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)  # exited (e.g. port in use): no point waiting
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            if json.load(answer).get("available_peers", -1) >= want:
                sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(0.3)
sys.exit(1)
PY
}

# stop_pidfile FILE: stop the process it names if it is still ours, wait for it, remove the file.
stop_pidfile() {
  local pid
  pid="$(cat "$1")"
  if ps -p "$pid" -o command= 2>/dev/null | grep -q mictlanx; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$1"
}

id="mictlanx-router-0"
mkdir -p "$DATA/logs" "$DATA/run"
pidfile="$DATA/run/$id.pid"
if [ -f "$pidfile" ]; then
  echo "stopping $id (pid $(cat "$pidfile"))"
  stop_pidfile "$pidfile"
fi
[ "${1:-start}" = "stop" ] && exit 0

nohup "$CMD" router --router-id "$id" --host "$HOST" --port "$PORT" --data-dir "$DATA/$id" --peers "$PEERS" \
  >"$DATA/logs/$id.log" 2>&1 &
echo $! >"$pidfile"
if wait_healthy "http://$HOST:$PORT/health" "$WANT" "$(cat "$pidfile")"; then
  echo "$id is up with $WANT peers: http://$HOST:$PORT (log: $DATA/logs/$id.log)"
  echo "client URI: mictlanx://$id@$HOST:$PORT/?protocol=http&api_version=4&http2=0"
else
  echo "deploy_router.sh: $id is not healthy on port $PORT with $WANT peers; see $DATA/logs/$id.log" >&2
  tail -n 5 "$DATA/logs/$id.log" >&2 || true
  stop_pidfile "$pidfile"
  exit 1
fi

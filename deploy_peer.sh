#!/usr/bin/env bash
# Start the local storage peers on the seed's ports, without Docker:
# mictlanx-peer-0 on 24000 and mictlanx-peer-1 on 24001, data under ./mictlanx-data/.
#
#   ./deploy_peer.sh         # (re)start the peers in the background, wait until healthy
#   ./deploy_peer.sh stop    # stop them
#
# Then ./deploy_router.sh starts the router in front of them. Needs
# `pip install "mictlanx-sync[server]"`. Settings, from the environment:
#   MICTLANX_SYNC        the command (default: mictlanx-sync on PATH, else ./.venv/bin/mictlanx-sync)
#   MICTLANX_HOST        bind address (default 127.0.0.1)
#   MICTLANX_PEER_PORTS  one port per peer (default "24000 24001")
#   MICTLANX_DATA_DIR    data, logs and pid files (default ./mictlanx-data)
set -euo pipefail

HOST="${MICTLANX_HOST:-127.0.0.1}"
PORTS="${MICTLANX_PEER_PORTS:-24000 24001}"
DATA="${MICTLANX_DATA_DIR:-./mictlanx-data}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${MICTLANX_SYNC:-}" ]; then CMD="$MICTLANX_SYNC"
elif command -v mictlanx-sync >/dev/null 2>&1; then CMD="mictlanx-sync"
elif [ -x "$HERE/.venv/bin/mictlanx-sync" ]; then CMD="$HERE/.venv/bin/mictlanx-sync"
else echo "deploy_peer.sh: mictlanx-sync not found; pip install 'mictlanx-sync[server]'" >&2; exit 1
fi

# wait_healthy URL ID PID: while PID runs, until URL answers 200 with {"peer_id": ID, ...} (30 s at most).
wait_healthy() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys, time, urllib.request
url, expected = sys.argv[1], sys.argv[2]
pid = int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)  # exited (e.g. port in use): no point waiting
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            if json.load(answer).get("peer_id") == expected:
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

mkdir -p "$DATA/logs" "$DATA/run"
i=0
for port in $PORTS; do
  id="mictlanx-peer-$i"
  pidfile="$DATA/run/$id.pid"
  if [ -f "$pidfile" ]; then
    echo "stopping $id (pid $(cat "$pidfile"))"
    stop_pidfile "$pidfile"
  fi
  if [ "${1:-start}" = "stop" ]; then i=$((i + 1)); continue; fi
  nohup "$CMD" peer --peer-id "$id" --host "$HOST" --port "$port" --data-dir "$DATA/$id" \
    >"$DATA/logs/$id.log" 2>&1 &
  echo $! >"$pidfile"
  if wait_healthy "http://$HOST:$port/health" "$id" "$(cat "$pidfile")"; then
    echo "$id is up: http://$HOST:$port (log: $DATA/logs/$id.log)"
  else
    echo "deploy_peer.sh: $id did not start on port $port; see $DATA/logs/$id.log" >&2
    tail -n 5 "$DATA/logs/$id.log" >&2 || true
    stop_pidfile "$pidfile"
    exit 1
  fi
  i=$((i + 1))
done

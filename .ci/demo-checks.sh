#!/usr/bin/env bash
# Runs the demo (real pipeline + HTTP server, in-memory SQL Server stand-ins,
# a private redis-server), then:
#   1. a real Prometheus scrapes it and every dashboard PromQL must return data;
#   2. headless Chromium drives the controller page and the Redis keys change.
# Needs: target/debug/examples/demo, redis-server, prometheus, chromium, node.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
artifacts="$PWD/target/ci-artifacts"
mkdir -p "$artifacts"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {
  for _ in $(seq 1 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "demo-checks: $1 did not answer" >&2; return 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

demo_port=$(free_port)
# The page's changes need the token (the page asks for it); without one the
# demo is read-only, as the daemon (checked in step 4).
demo_token="demo-ci-$RANDOM$RANDOM"
REDIS_URL="redis://127.0.0.1:$redis_port/" CTSYNC_HTTP_ADDR="127.0.0.1:$demo_port" \
  CTSYNC_API_TOKEN="$demo_token" \
  target/debug/examples/demo >"$work/demo.log" 2>&1 &
demo_pid=$!
pids+=($demo_pid)
wait_http "http://127.0.0.1:$demo_port/healthz"
echo "demo-checks: demo on 127.0.0.1:$demo_port, redis on $redis_port"

# 1. Prometheus with the repository's scrape config, pointed at the demo.
prom_port=$(free_port)
# The shipped file finds every instance of the compose service by DNS; here
# the one demo is a static target.
static_target=$(cat <<'PY'
import re, sys
text = sys.stdin.read()
block = re.compile(r"    dns_sd_configs:\n      - names: \[\"ctsync\"\]\n        type: A\n        port: 8080\n")
if not block.search(text):
    sys.exit("demo-checks: prometheus.yml no longer has the ctsync dns_sd_configs block")
text = block.sub(f'    static_configs:\n      - targets: ["127.0.0.1:{sys.argv[1]}"]\n', text)
text = text.replace("scrape_interval: 5s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s")
sys.stdout.write(text)
PY
)
python3 -c "$static_target" "$demo_port" <prometheus/prometheus.yml >"$work/prometheus.yml"
# The shipped rules, with every `for:` shortened to 15 s for the check.
sed -E "s/^( *)for: [0-9]+m$/\1for: 15s/" prometheus/alerts.yml >"$work/alerts.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom_port/-/ready"
# The demo's Legacy table stays in error: its alert fires, and no table
# alert fires for the healthy tables.
if ! python3 .ci/check_alerts.py "http://127.0.0.1:$prom_port" Legacy Flaky 90; then
  echo "--- demo log (tail)"; tail -n 40 "$work/demo.log"
  exit 1
fi
if ! python3 .ci/check_dashboard.py "http://127.0.0.1:$prom_port" grafana/dashboards/ctsync.json 120; then
  echo "--- demo log (tail)"; tail -n 40 "$work/demo.log"
  exit 1
fi

# 2. The page in headless Chromium (playwright-core drives Debian's chromium).
if [ ! -d "$work/node/node_modules/playwright-core" ]; then
  npm install --silent --no-audit --no-fund --prefix "$work/node" playwright-core@1 >/dev/null
fi
NODE_PATH="$work/node/node_modules" node .ci/ui_check.cjs \
  "http://127.0.0.1:$demo_port" "$redis_port" "$artifacts/controller-page.png" "$demo_token"
echo "demo-checks: screenshots $artifacts/controller-page{,-1400px,-1024px,-800px,-390px}.png"

# 3. SIGTERM: the demo stops with the daemon's sequence, exit 0, in seconds
# (its slow full-load pages may be mid-load now).
started=$(date +%s.%N)
kill -TERM "$demo_pid"
status=0
wait "$demo_pid" || status=$?
took=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
echo "demo-checks: SIGTERM -> exit $status in ${took} s: $(grep -o 'stopped[^"]*' "$work/demo.log" | head -n 1)"
if [ "$status" -ne 0 ] || ! python3 -c "import sys; sys.exit(0 if $took < 15 else 1)"; then
  echo "demo-checks: the demo did not stop cleanly within 15 s" >&2
  tail -n 20 "$work/demo.log"
  exit 1
fi
# Its log went to a file: no terminal colour codes in it (issue 28 item 4).
if grep -q $'\x1b' "$work/demo.log"; then
  echo "demo-checks: the demo wrote terminal colour codes into a log file" >&2
  grep -m 3 $'\x1b' "$work/demo.log" | cat -v >&2
  exit 1
fi
echo "demo-checks: the demo's log file holds no colour codes"

# 4. Without a token the demo (as the daemon) is read-only: the page shows
# its controls disabled, saying why, and a write changes nothing.
redis-cli -p "$redis_port" FLUSHALL >/dev/null
ro_port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port/" CTSYNC_HTTP_ADDR="127.0.0.1:$ro_port" \
  target/debug/examples/demo >"$work/demo-ro.log" 2>&1 &
ro_pid=$!
pids+=($ro_pid)
wait_http "http://127.0.0.1:$ro_port/healthz"
NODE_PATH="$work/node/node_modules" node .ci/ui_check.cjs --read-only \
  "http://127.0.0.1:$ro_port" "$redis_port" "$artifacts/controller-page-read-only.png"
kill -TERM "$ro_pid"
wait "$ro_pid" || true

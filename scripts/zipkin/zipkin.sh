#!/usr/bin/env bash
# A real Zipkin server (OpenZipkin's own server jar, in-memory storage) for the tracing tests
# and for looking at traces by hand, bound to 127.0.0.1 only.
#
#   zipkin.sh start     starts it on 127.0.0.1:$MERIDIAN_ZIPKIN_PORT (default 9411); a no-op when it answers
#   zipkin.sh stop      stops it (SIGTERM, then SIGKILL after a bound)
#   zipkin.sh status    exit 0 only when it answers
#   zipkin.sh env       prints the export line the tests read
#   zipkin.sh fetch     only downloads the jar
#
# The jar (io.zipkin:zipkin-server, classifier exec) comes from Maven Central through
# `mvn dependency:copy` and is cached outside the clone in $MERIDIAN_ZIPKIN_HOME (default
# ~/.cache/meridian/zipkin-<version>), so CI runs on the same machine reuse it. The PID file and
# log live in $MERIDIAN_ZIPKIN_DIR (default <project>/.zipkin, gitignored). Every wait is
# bounded: MERIDIAN_ZIPKIN_START_TIMEOUT_S (default 90) for readiness, 20 s for a stop.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(cd "$script_dir/../.." && pwd)
version=${MERIDIAN_ZIPKIN_VERSION:-3.5.1}
zipkin_home=${MERIDIAN_ZIPKIN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/meridian/zipkin-$version}
jar="$zipkin_home/zipkin-server-$version-exec.jar"
state_dir=${MERIDIAN_ZIPKIN_DIR:-$project_dir/.zipkin}
port=${MERIDIAN_ZIPKIN_PORT:-9411}
start_timeout_s=${MERIDIAN_ZIPKIN_START_TIMEOUT_S:-90}

log() { printf '[zipkin] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

answers() { curl -fsS -m 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; }

fetch_jar() {
  [[ -f $jar ]] && return 0
  command -v mvn >/dev/null || die "mvn is not on PATH: it fetches Zipkin's server jar from Maven Central"
  log "fetching zipkin-server $version from Maven Central into $zipkin_home"
  mkdir -p "$zipkin_home"
  local tmp="$zipkin_home/tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B dependency:copy -Dartifact="io.zipkin:zipkin-server:$version:jar:exec" \
    -DoutputDirectory="$tmp" >"$zipkin_home/mvn.log" 2>&1; then
    tail -n 30 "$zipkin_home/mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch zipkin-server $version (full log: $zipkin_home/mvn.log)"
  fi
  # Moved in one step, so a half-downloaded jar is never started.
  mv "$tmp/zipkin-server-$version-exec.jar" "$jar"
  rm -rf "$tmp"
}

cmd_start() {
  if answers; then
    log "already answering on 127.0.0.1:$port"
    return 0
  fi
  command -v java >/dev/null || die "java is not on PATH (Zipkin needs Java 17+)"
  fetch_jar
  mkdir -p "$state_dir"
  # In-memory storage, bounded; a small heap: it holds a test run's traces, nothing more.
  QUERY_PORT=$port STORAGE_TYPE=mem MEM_MAX_SPANS=200000 \
    nohup java -Xms64m -Xmx384m -XX:+UseSerialGC -jar "$jar" \
    "--armeria.ports[0].ip=127.0.0.1" "--armeria.ports[0].port=$port" "--armeria.ports[0].protocols[0]=http" \
    --logging.level.root=WARN >"$state_dir/zipkin.log" 2>&1 &
  echo $! >"$state_dir/zipkin.pid"
  local waited=0
  until answers; do
    if ! kill -0 "$(cat "$state_dir/zipkin.pid")" 2>/dev/null; then
      tail -n 30 "$state_dir/zipkin.log" >&2
      die "zipkin exited before answering (log: $state_dir/zipkin.log)"
    fi
    ((waited++ < start_timeout_s)) || die "zipkin did not answer within ${start_timeout_s}s (log: $state_dir/zipkin.log)"
    sleep 1
  done
  log "answering on http://127.0.0.1:$port"
}

cmd_stop() {
  local file="$state_dir/zipkin.pid" pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) answers ;;
env) echo "export MERIDIAN_TEST_ZIPKIN_URL=http://127.0.0.1:$port" ;;
fetch) fetch_jar && echo "$jar" ;;
*) die "usage: zipkin.sh start|stop|status|env|fetch" ;;
esac

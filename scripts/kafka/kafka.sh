#!/usr/bin/env bash
# A real Apache Kafka (KRaft mode) for development, tests and CI, bound to 127.0.0.1 only.
#
#   kafka.sh start single     one combined broker+controller on 127.0.0.1:9092
#   kafka.sh start cluster    three combined nodes on 127.0.0.1:19092-19094 (replication factor 3,
#                             min.insync.replicas=2), for fault tests
#   kafka.sh stop             stops every node (SIGTERM, then SIGKILL after a bound) and deletes data
#   kafka.sh status           prints the nodes and whether they answer; exit 0 only when all do
#   kafka.sh stop-node N [--kill]   stops node N of the cluster (SIGTERM, or SIGKILL with --kill),
#                             keeping its data so start-node N brings it back
#   kafka.sh start-node N     restarts node N of the cluster from its data
#   kafka.sh kill-node N      stop-node N --kill (what `meridian verify --broker-control` runs)
#   kafka.sh env              prints the export line for the running layout
#   kafka.sh fetch            only downloads the jars
#
# The jars come from Maven Central through pom.xml (beside this file) and are cached outside the
# clone, in $MERIDIAN_KAFKA_HOME (default ~/.cache/meridian/kafka-<version>), so CI runs on the same
# machine reuse them; Maven's ~/.m2 is a second cache. Data, logs and PID files live in
# $MERIDIAN_KAFKA_DIR (default <project>/.kafka, gitignored). Every wait is bounded:
# MERIDIAN_KAFKA_START_TIMEOUT_S (default 60) for readiness, 30 s for a graceful stop.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(cd "$script_dir/../.." && pwd)
pom="$script_dir/pom.xml"
pom_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
version=${MERIDIAN_KAFKA_VERSION:-$pom_version}
kafka_home=${MERIDIAN_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/meridian/kafka-$version}
libs="$kafka_home/libs"
state_dir=${MERIDIAN_KAFKA_DIR:-$project_dir/.kafka}
start_timeout_s=${MERIDIAN_KAFKA_START_TIMEOUT_S:-60}
stop_timeout_s=30

# Ports. A single broker takes Kafka's usual 9092 (controller 9093); the cluster takes its own
# range so both layouts could be told apart in logs, and a stray single broker never answers for it.
single_port=9092
single_controller_port=9093
cluster_base_port=19092
cluster_controller_base_port=19192
cluster_size=3

log() { printf '[kafka] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

node_ids() { # layout
  if [[ $1 == single ]]; then echo 1; else seq 1 "$cluster_size"; fi
}
broker_port() { # layout id
  if [[ $1 == single ]]; then echo "$single_port"; else echo $((cluster_base_port + $2 - 1)); fi
}
controller_port() { # layout id
  if [[ $1 == single ]]; then echo "$single_controller_port"; else echo $((cluster_controller_base_port + $2 - 1)); fi
}
broker_list() { # layout
  local id list=()
  for id in $(node_ids "$1"); do list+=("127.0.0.1:$(broker_port "$1" "$id")"); done
  (IFS=,; echo "${list[*]}")
}
env_line() { # layout
  if [[ $1 == single ]]; then
    echo "export MERIDIAN_TEST_KAFKA_BROKERS=$(broker_list single)"
  else
    echo "export MERIDIAN_TEST_KAFKA_CLUSTER=$(broker_list cluster)"
  fi
}

node_dir() { echo "$state_dir/node-$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
current_layout() { cat "$state_dir/layout" 2>/dev/null || true; }

port_open() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
alive() { # pid: a zombie (exited, not yet reaped by whoever adopted it) counts as dead
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [[ $state != Z ]]
}
node_pid() { # id: prints the PID when that node's process is alive
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(cat "$file")
  [[ -n $pid ]] && alive "$pid" || return 1
  echo "$pid"
}

fetch_jars() {
  command -v java >/dev/null || die "java is not on PATH (Kafka $version needs Java 17+)"
  # The stamp names the version and the pom's content, so editing the pom refreshes the cache.
  local stamp="$kafka_home/.complete" want
  want="$version $(sha256sum "$pom" | cut -c1-16)"
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -d $libs ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn is not on PATH: it fetches Kafka's jars from Maven Central"
  log "fetching Apache Kafka $version jars from Maven Central into $libs"
  mkdir -p "$kafka_home"
  local tmp="$kafka_home/libs.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -f "$pom" -Dkafka.version="$version" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$kafka_home/mvn.log" 2>&1; then
    tail -n 30 "$kafka_home/mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch Kafka $version (full log: $kafka_home/mvn.log)"
  fi
  # Replace the directory in one step so a half-copied set of jars is never used.
  rm -rf "$libs"
  mv "$tmp" "$libs"
  echo "$want" >"$stamp"
}

write_log4j_config() {
  cat >"$state_dir/log4j2.properties" <<'EOF'
# Kafka logs to <node dir>/logs/server.log, rolled at 20 MB and kept twice.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

write_node_config() { # layout id
  local layout=$1 id=$2 dir voters="" other replication min_isr io_threads
  dir=$(node_dir "$id")
  for other in $(node_ids "$layout"); do
    voters+="${voters:+,}$other@127.0.0.1:$(controller_port "$layout" "$other")"
  done
  if [[ $layout == single ]]; then
    replication=1 min_isr=1 io_threads=4
  else
    replication=3 min_isr=2 io_threads=2
  fi
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka/kafka.sh ($layout layout, node $id). Edit the script, not this file.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$layout" "$id"),CONTROLLER://127.0.0.1:$(controller_port "$layout" "$id")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$layout" "$id")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

# Topics are created on purpose (Log.createTopic), never by a typo in a consumer.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=$replication
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0

# A 2-core machine shared with other work: few threads, and failures noticed within seconds.
num.network.threads=2
num.io.threads=$io_threads
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
log.retention.check.interval.ms=10000
EOF
}

start_node_process() { # layout id
  local layout=$1 id=$2 dir heap
  dir=$(node_dir "$id")
  if [[ $layout == single ]]; then heap=512m; else heap=384m; fi
  : >"$dir/logs/server.log"
  # setsid: the broker must outlive the shell (or npm script) that started it. 9>&-: it must not
  # inherit the lock below, or it would hold it for as long as it runs.
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$state_dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/logs/stdout.log" 2>&1 9>&- &
  echo $! >"$(pid_file "$id")"
}

format_node() { # id cluster-id
  local dir
  dir=$(node_dir "$1")
  java -Xmx256m -Dlog4j2.configurationFile="$state_dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$libs/*" kafka.tools.StorageTool format --cluster-id "$2" --config "$dir/server.properties" \
    >"$dir/logs/format.log" 2>&1 || {
    cat "$dir/logs/format.log" >&2
    die "formatting node $1 failed"
  }
}

fail_with_logs() { # id message
  local dir
  dir=$(node_dir "$1")
  log "last lines of $dir/logs/server.log:"
  tail -n 40 "$dir/logs/server.log" >&2 || true
  tail -n 20 "$dir/logs/stdout.log" >&2 || true
  die "$2"
}

# Waits until every given node's process logged that it started and its port accepts connections,
# then until a metadata request lists `expected` brokers (the cluster is usable, not only listening).
wait_ready() { # layout expected id...
  local layout=$1 expected=$2 id deadline node
  shift 2
  deadline=$((SECONDS + start_timeout_s))
  for id in "$@"; do
    while :; do
      node_pid "$id" >/dev/null || fail_with_logs "$id" "node $id exited during startup"
      if grep -q 'Kafka Server started' "$(node_dir "$id")/logs/server.log" 2>/dev/null &&
        port_open "$(broker_port "$layout" "$id")"; then
        break
      fi
      ((SECONDS < deadline)) || fail_with_logs "$id" "node $id not ready within ${start_timeout_s}s"
      sleep 0.5
    done
  done
  node="$project_dir/node_modules/.bin/node"
  if [[ -x $node && -d $project_dir/node_modules/@platformatic/kafka ]]; then
    local remaining_ms=$(((deadline - SECONDS) * 1000))
    ((remaining_ms > 5000)) || remaining_ms=5000
    "$node" "$script_dir/probe.ts" "$(broker_list "$layout")" "$expected" "$remaining_ms" ||
      fail_with_logs "$1" "the brokers did not answer a metadata request with $expected brokers"
  else
    log "node_modules not installed: skipped the metadata probe (ports are open)"
  fi
}

cmd_start() { # layout
  local layout=${1:-single} running id cluster_id ids=()
  [[ $layout == single || $layout == cluster ]] || die "unknown layout '$layout': use single or cluster"
  mkdir -p "$state_dir"
  running=$(current_layout)
  if [[ -n $running ]]; then
    local alive=0
    for id in $(node_ids "$running"); do node_pid "$id" >/dev/null && alive=$((alive + 1)); done
    if ((alive > 0)); then
      [[ $running == "$layout" ]] || die "the $running layout is running: run '$0 stop' first"
      (($(node_ids "$layout" | wc -l) == alive)) ||
        die "the $layout layout is partly running: use start-node, or stop it first"
      log "the $layout layout is already running"
      wait_ready "$layout" "$alive" $(node_ids "$layout")
      env_line "$layout"
      return 0
    fi
    log "removing the state of a $running layout that is no longer running"
    cmd_stop
  fi
  for id in $(node_ids "$layout"); do
    for port in "$(broker_port "$layout" "$id")" "$(controller_port "$layout" "$id")"; do
      ! port_open "$port" || die "127.0.0.1:$port is already in use by another process"
    done
  done
  fetch_jars
  local started_s=$SECONDS
  rm -rf "$state_dir"/node-*
  write_log4j_config
  echo "$layout" >"$state_dir/layout"
  # A fresh random cluster id for every start: no state leaks from one run into the next.
  # (Kafka's Uuid text form: 16 random bytes in URL-safe base64 without padding; this is what
  # `StorageTool random-uuid` prints, without a JVM start.)
  # One id in 64 starts with '-', which the format tool's argument parser takes for an option
  # ("argument --cluster-id: expected one argument", CI failed on it once): draw again then.
  cluster_id=-
  while [[ $cluster_id == -* ]]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  for id in $(node_ids "$layout"); do
    write_node_config "$layout" "$id"
    format_node "$id" "$cluster_id" &
    ids+=("$id")
  done
  wait
  for id in "${ids[@]}"; do start_node_process "$layout" "$id"; done
  wait_ready "$layout" "${#ids[@]}" "${ids[@]}"
  log "Kafka $version $layout layout ready in $((SECONDS - started_s))s at $(broker_list "$layout") (state: $state_dir)"
  env_line "$layout"
}

stop_pid() { # id signal
  local id=$1 signal=$2 pid deadline
  pid=$(node_pid "$id") || {
    rm -f "$(pid_file "$id")"
    return 0
  }
  kill "-$signal" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout_s))
  while alive "$pid"; do
    if ((SECONDS >= deadline + 10)); then
      die "node $id (pid $pid) survived SIGKILL for 10s"
    elif ((SECONDS >= deadline)) && [[ $signal != KILL ]]; then
      log "node $id did not stop within ${stop_timeout_s}s: SIGKILL"
      signal=KILL
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$id")"
}

cmd_stop() {
  local layout id
  layout=$(current_layout)
  if [[ -z $layout ]]; then
    log "nothing is running"
    return 0
  fi
  # Stop in parallel: a cluster node's controlled shutdown waits on the others' quorum, and
  # stopping them one after the other would make the last ones wait for a lost quorum.
  for id in $(node_ids "$layout"); do stop_pid "$id" TERM & done
  wait
  rm -rf "$state_dir"/node-*/data "$state_dir/layout"
  log "stopped the $layout layout (logs kept in $state_dir/node-*/logs)"
}

cmd_stop_node() { # id [--kill]
  local id=${1:-} signal=TERM
  [[ $(current_layout) == cluster ]] || die "stop-node needs the cluster layout running"
  [[ $id =~ ^[1-9]$ ]] && ((id <= cluster_size)) || die "node must be 1..$cluster_size: got '$id'"
  [[ ${2:-} == --kill ]] && signal=KILL
  stop_pid "$id" "$signal"
  log "node $id stopped with SIG$signal (data kept)"
}

cmd_start_node() { # id
  local id=${1:-} alive=0 other
  [[ $(current_layout) == cluster ]] || die "start-node needs the cluster layout running"
  [[ $id =~ ^[1-9]$ ]] && ((id <= cluster_size)) || die "node must be 1..$cluster_size: got '$id'"
  if node_pid "$id" >/dev/null; then
    log "node $id is already running"
    return 0
  fi
  start_node_process cluster "$id"
  for other in $(node_ids cluster); do node_pid "$other" >/dev/null && alive=$((alive + 1)); done
  wait_ready cluster "$alive" "$id"
  log "node $id is back"
}

cmd_status() {
  local layout id pid port up=0 total=0
  layout=$(current_layout)
  if [[ -z $layout ]]; then
    echo "kafka: not running"
    return 3
  fi
  echo "kafka $version, $layout layout, state in $state_dir"
  for id in $(node_ids "$layout"); do
    total=$((total + 1))
    port=$(broker_port "$layout" "$id")
    if pid=$(node_pid "$id") && port_open "$port"; then
      echo "  node $id: up (pid $pid) 127.0.0.1:$port"
      up=$((up + 1))
    elif pid=$(node_pid "$id"); then
      echo "  node $id: starting (pid $pid) 127.0.0.1:$port"
    else
      echo "  node $id: down 127.0.0.1:$port"
    fi
  done
  env_line "$layout"
  ((up == total))
}

cmd_env() {
  local layout
  layout=$(current_layout)
  [[ -n $layout ]] || die "nothing is running"
  env_line "$layout"
}

# One command at a time: a start racing a stop would leave half a cluster behind.
mkdir -p "$state_dir"
exec 9>"$state_dir/.lock"
flock -w 120 9 || die "another kafka.sh command held the lock for 120s"

case ${1:-} in
start) cmd_start "${2:-single}" ;;
stop) cmd_stop ;;
status) cmd_status ;;
stop-node) cmd_stop_node "${2:-}" "${3:-}" ;;
start-node) cmd_start_node "${2:-}" ;;
kill-node) cmd_stop_node "${2:-}" --kill ;;
env) cmd_env ;;
fetch) fetch_jars && echo "$libs" ;;
*)
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac

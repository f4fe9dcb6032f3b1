#!/usr/bin/env bash
# A real Redis Cluster for tests, benchmarks and CI: three masters with one replica each, started
# from the machine's own `redis-server`, bound to 127.0.0.1 only.
#
#   cluster.sh start          starts the six nodes (if not running) and creates the cluster (if not
#                             created); idempotent and fast when the cluster is already healthy
#   cluster.sh stop           stops every node and deletes the data
#   cluster.sh status         exit 0 only when every node answers and the cluster state is ok
#   cluster.sh kill-node PORT SIGKILLs one node (a failover test's fault), keeping its data
#   cluster.sh start-node PORT restarts one node from its data (it rejoins, as a replica)
#   cluster.sh env            prints the export line for the tests
#
# Ports: $MERIDIAN_REDIS_CLUSTER_BASE_PORT+1 .. +6 (default 17001-17006; each node's cluster bus
# is its port + 10000). Data, logs and PID files live in $MERIDIAN_REDIS_CLUSTER_DIR (default
# /tmp/meridian-redis-cluster-<base port>). Every wait is bounded (30 s).
set -euo pipefail

base_port=${MERIDIAN_REDIS_CLUSTER_BASE_PORT:-17000}
state_dir=${MERIDIAN_REDIS_CLUSTER_DIR:-/tmp/meridian-redis-cluster-$base_port}
node_count=6
# How long a master may be unreachable before its replica takes over. Short, so a failover test
# finishes in seconds; a production cluster would use Redis's default (15 s).
node_timeout_ms=${MERIDIAN_REDIS_CLUSTER_NODE_TIMEOUT_MS:-1500}
wait_s=30

log() { printf '[redis-cluster] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ports() { seq $((base_port + 1)) $((base_port + node_count)); }
node_list() { local p list=(); for p in $(ports); do list+=("127.0.0.1:$p"); done; echo "${list[*]}"; }
answers() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
cluster_field() { # port field
  redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

start_node() { # port
  local port=$1 dir="$state_dir/$1"
  answers "$port" && return 0
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout_ms" \
    --cluster-replica-validity-factor 0 --save "" --appendonly no \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 $((wait_s * 10))); do answers "$port" && return 0; sleep 0.1; done
  die "node $port did not answer within ${wait_s}s (see $dir/redis.log)"
}

healthy() {
  local port
  for port in $(ports); do
    answers "$port" || return 1
    [[ $(cluster_field "$port" cluster_state) == ok ]] || return 1
    [[ $(cluster_field "$port" cluster_known_nodes) == "$node_count" ]] || return 1
    # A replica counts once it has synced from its master: before that a failover would lose data.
    if redis-cli -h 127.0.0.1 -p "$port" role 2>/dev/null | head -1 | grep -q slave; then
      redis-cli -h 127.0.0.1 -p "$port" info replication | tr -d '\r' | grep -q '^master_link_status:up' || return 1
    fi
  done
  # Three masters with one replica each, none flagged failing.
  local nodes
  nodes=$(redis-cli -h 127.0.0.1 -p "$((base_port + 1))" cluster nodes)
  [[ $(grep -c 'slave' <<<"$nodes") == $((node_count / 2)) ]] || return 1
  ! grep -q 'fail' <<<"$nodes"
}

wait_healthy() {
  for _ in $(seq 1 $((wait_s * 10))); do healthy && return 0; sleep 0.1; done
  return 1
}

create() {
  local port
  for port in $(ports); do
    redis-cli -h 127.0.0.1 -p "$port" flushall >/dev/null 2>&1 || true
    redis-cli -h 127.0.0.1 -p "$port" cluster reset hard >/dev/null
  done
  # shellcheck disable=SC2046
  redis-cli --cluster create $(node_list) --cluster-replicas 1 --cluster-yes >"$state_dir/create.log" 2>&1 ||
    die "redis-cli --cluster create failed (see $state_dir/create.log)"
}

start() {
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
  if healthy; then
    log "running: $(node_list)"
    return 0
  fi
  local port
  for port in $(ports); do start_node "$port"; done
  # Nodes restarted from their data rejoin the cluster they knew; fresh nodes need creating.
  if [[ $(cluster_field "$((base_port + 1))" cluster_known_nodes) != "$node_count" ]]; then create; fi
  wait_healthy || die "the cluster did not reach state ok within ${wait_s}s"
  log "running: $(node_list)"
}

stop() {
  local port pid
  for port in $(ports); do
    if [[ -f "$state_dir/$port/redis.pid" ]]; then
      pid=$(cat "$state_dir/$port/redis.pid")
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$state_dir"
  log "stopped"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) if healthy; then log "ok: $(node_list)"; else log "not healthy"; exit 1; fi ;;
kill-node)
  [[ -f "$state_dir/${2:?port}/redis.pid" ]] || die "no node on port $2"
  kill -9 "$(cat "$state_dir/$2/redis.pid")"
  ;;
start-node) start_node "${2:?port}" ;;
env) echo "export MERIDIAN_TEST_REDIS_CLUSTER_NODES=$(node_list | tr ' ' ',')" ;;
*) die "usage: cluster.sh start|stop|status|kill-node PORT|start-node PORT|env" ;;
esac

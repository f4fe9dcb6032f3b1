#!/usr/bin/env bash
# The commerce system as a local cluster, in one command: three Kafka brokers (replication factor
# 3, min.insync.replicas=2), PostgreSQL with a synchronous streaming standby and a failover
# monitor, Redis, the payment gateway as its own process, three commerce nodes and HAProxy in
# front of them. Everything binds to 127.0.0.1.
#
#   cluster.sh start              starts every process not running yet and prints the endpoints
#   cluster.sh stop               stops every process and deletes the data (PostgreSQL clusters too)
#   cluster.sh status             one line per process; exit 0 only when all run
#   cluster.sh endpoints          prints the endpoint block again
#   cluster.sh env                prints the export lines (URLs, operator token) for scripts
#   cluster.sh kill NAME          SIGKILLs one process, keeping its data: node-1..node-3, payments,
#                                 redis, haproxy, kafka-1..kafka-3, pg-primary, pg-standby
#   cluster.sh drain node-N       stops one node cleanly (SIGTERM: it drains and hands its partitions over)
#   cluster.sh restart NAME       starts that process again (kafka-N, node-N, payments, redis, haproxy)
#   cluster.sh pg-restart         restarts the PostgreSQL primary (immediate stop, then start), the
#                                 failover monitor paused meanwhile
#   cluster.sh pg-rebuild-standby makes the dead or demoted server a standby of the current primary
#                                 again (pg_basebackup), and turns synchronous replication back on
#   cluster.sh pg-primary         prints the port of the current primary
#   cluster.sh netns-move node-N  restarts that node in a network namespace of its own, bridged to
#                                 127.0.0.1 (root; socat, tc); netns-cut node-N then drops its
#                                 PostgreSQL and Kafka packets while HTTP still flows, netns-heal
#                                 node-N lets them through, netns-remove node-N brings it back
#
# Ports (environment): MERIDIAN_CLUSTER_HTTP_PORT (HAProxy, 18080; its stats page +1),
# MERIDIAN_CLUSTER_NODE_BASE_PORT (18110: nodes on +1..+3), MERIDIAN_CLUSTER_PAYMENTS_PORT (18101),
# MERIDIAN_CLUSTER_REDIS_PORT (18190), MERIDIAN_CLUSTER_PG_PORT (5442: primary; standby +1), Kafka
# 19092-19094 (scripts/kafka/kafka.sh). State lives in $MERIDIAN_CLUSTER_DIR (default
# <project>/.meridian-cluster, gitignored); PostgreSQL's two servers are Debian clusters
# 15/meridian-a and 15/meridian-b (pg_createcluster), their data under /var/lib/postgresql
# (MERIDIAN_CLUSTER_PG_DATA): the postgres user must reach it, which a project checked out in a
# private directory (mode 700, as mktemp makes them) does not allow. Every wait is bounded.
# MERIDIAN_CLUSTER_NODES (3) sets how many commerce nodes run.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(cd "$script_dir/../.." && pwd)
state_dir=${MERIDIAN_CLUSTER_DIR:-$project_dir/.meridian-cluster}
node_bin="$project_dir/node_modules/.bin/node"
http_port=${MERIDIAN_CLUSTER_HTTP_PORT:-18080}
stats_port=$((http_port + 1))
node_base_port=${MERIDIAN_CLUSTER_NODE_BASE_PORT:-18110}
node_count=${MERIDIAN_CLUSTER_NODES:-3}
payments_port=${MERIDIAN_CLUSTER_PAYMENTS_PORT:-18101}
redis_port=${MERIDIAN_CLUSTER_REDIS_PORT:-18190}
pg_base_port=${MERIDIAN_CLUSTER_PG_PORT:-5442}
# How long the primary may not answer before the monitor promotes the standby.
failover_ms=${MERIDIAN_CLUSTER_PG_FAILOVER_MS:-3000}
pg_version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
pg_data_root=${MERIDIAN_CLUSTER_PG_DATA:-/var/lib/postgresql/meridian-cluster-$(printf %s "$state_dir" | md5sum | cut -c1-10)}
kafka_brokers=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
database=meridian
wait_s=${MERIDIAN_CLUSTER_WAIT_S:-180}
export MERIDIAN_KAFKA_DIR="$state_dir/kafka"
# A broker restarting under load on a busy machine takes longer than kafka.sh's default minute.
export MERIDIAN_KAFKA_START_TIMEOUT_S=${MERIDIAN_KAFKA_START_TIMEOUT_S:-180}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ $node_count =~ ^[1-9]$ ]] || die "MERIDIAN_CLUSTER_NODES must be 1..9: current value is '$node_count'"
[[ -n $pg_version ]] || die "no PostgreSQL server found in /usr/lib/postgresql: apt-get install -y postgresql"

pid_of() { # name: prints the PID when that process is alive
  local file="$state_dir/$1.pid" pid
  [[ -f $file ]] || return 1
  pid=$(cat "$file")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]] && echo "$pid"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # description command...
  local what=$1 deadline=$((SECONDS + wait_s))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || die "$what not ready within ${wait_s}s (logs in $state_dir)"
    sleep 0.3
  done
}
http_ok() { curl -fs -o /dev/null --max-time 2 "$1"; }
launch() { # name logfile command...: runs in the background, detached from this shell
  local name=$1 logfile=$2
  shift 2
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$state_dir/$name.pid"
}

# ---- PostgreSQL: two Debian clusters, a primary and a synchronous standby -------------------
pg_name() { echo "meridian-$1"; } # a | b
pg_port() { if [[ $1 == a ]]; then echo "$pg_base_port"; else echo $((pg_base_port + 1)); fi; }
other() { if [[ $1 == a ]]; then echo b; else echo a; fi; }
primary() { cat "$state_dir/pg/primary" 2>/dev/null || echo a; }
pg_exists() { [[ -f /etc/postgresql/$pg_version/$(pg_name "$1")/postgresql.conf ]]; }
psql_at() { # port sql
  psql -X -q -t -A -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}
pg_ctl_cluster() { pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$(pg_name "$1")" "${@:2}"; }

pg_create() { # side: an empty cluster with this layout's settings
  local side=$1
  pg_createcluster "$pg_version" "$(pg_name "$side")" -p "$(pg_port "$side")" -d "$pg_data_root/$side" \
    -- --auth=trust >/dev/null
  cat >"/etc/postgresql/$pg_version/$(pg_name "$side")/conf.d/meridian-cluster.conf" <<EOF
# scripts/cluster/cluster.sh: a primary and a streaming standby, on 127.0.0.1 only.
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
wal_keep_size = '256MB'
hot_standby = on
wal_log_hints = on
max_connections = 200
shared_buffers = '64MB'
log_line_prefix = '%m [%p] '
EOF
}

pg_standby_from() { # side primary-side: replaces side's data with a base backup of the primary
  local side=$1 from=$2 dir="$pg_data_root/$1"
  pg_ctl_cluster "$side" stop -m immediate 2>/dev/null || true
  rm -rf "$dir" && mkdir -p "$dir" && chown postgres:postgres "$dir" && chmod 700 "$dir"
  runuser -u postgres -- pg_basebackup -h 127.0.0.1 -p "$(pg_port "$from")" -U postgres -D "$dir" \
    -X stream -c fast -R -d "application_name=$(pg_name "$side")" >/dev/null
  pg_ctl_cluster "$side" start
  wait_for "PostgreSQL standby $(pg_name "$side")" pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$side")"
  # Synchronous from here: a commit returns once the standby has it, so a promotion loses nothing acknowledged.
  wait_for "the standby streaming" bash -c "[[ \$(psql -X -t -A -h 127.0.0.1 -p $(pg_port "$from") -U postgres -d postgres -c 'SELECT count(*) FROM pg_stat_replication') -ge 1 ]]"
  psql_at "$(pg_port "$from")" "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
  psql_at "$(pg_port "$from")" 'SELECT pg_reload_conf()' >/dev/null
}

start_pg() {
  mkdir -p "$state_dir/pg" "$pg_data_root" && chown postgres:postgres "$pg_data_root"
  if ! pg_exists a; then
    echo a >"$state_dir/pg/primary"
    pg_create a
    pg_ctl_cluster a start
    wait_for "PostgreSQL primary" pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port a)"
    psql_at "$(pg_port a)" "CREATE DATABASE $database" >/dev/null
    pg_create b
    pg_standby_from b a
  fi
  local p
  p=$(primary)
  pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$p")" || pg_ctl_cluster "$p" start
  # The other server starts only as a standby: a former primary (a failover happened) would be a
  # second primary; pg-rebuild-standby makes it a standby of the current one.
  if [[ -f "$pg_data_root/$(other "$p")/standby.signal" ]]; then
    pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$(other "$p")")" || pg_ctl_cluster "$(other "$p")" start || true
  else
    log "$(pg_name "$(other "$p")") is a former primary: 'cluster.sh pg-rebuild-standby' makes it a standby again"
  fi
  wait_for "PostgreSQL primary" pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$p")"
  pid_of pg-monitor >/dev/null || launch pg-monitor "$state_dir/pg-monitor.log" bash "$0" pg-monitor
}

is_primary() { [[ $(psql_at "$1" 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]]; }

# The failover monitor: promotes the standby when the primary has not answered for failover_ms,
# and turns synchronous replication off on the new primary until a standby is rebuilt (else
# every commit would wait for a standby that does not exist).
cmd_pg_monitor() {
  local down_since=0 p s now
  while sleep 0.5; do
    p=$(primary)
    s=$(other "$p")
    # Fence: a former primary that came back (restarted by hand) beside the promoted one would
    # take writes of its own; stop it at once.
    if pg_isready -U postgres -q -t 1 -h 127.0.0.1 -p "$(pg_port "$s")" && is_primary "$(pg_port "$s")" &&
      is_primary "$(pg_port "$p")"; then
      log "$(pg_name "$s") runs as a second primary: stopping it (pg-rebuild-standby makes it a standby)"
      pg_ctl_cluster "$s" stop -m immediate || true
    fi
    if [[ -f "$state_dir/pg/maintenance" ]] || pg_isready -U postgres -q -t 1 -h 127.0.0.1 -p "$(pg_port "$p")"; then
      down_since=0
      continue
    fi
    now=$(date +%s%3N)
    ((down_since > 0)) || down_since=$now
    ((now - down_since >= failover_ms)) || continue
    if pg_isready -U postgres -q -t 1 -h 127.0.0.1 -p "$(pg_port "$s")" && ! is_primary "$(pg_port "$s")"; then
      log "primary $(pg_name "$p") silent for $((now - down_since)) ms: promoting $(pg_name "$s")"
      pg_ctl_cluster "$s" promote
      for _ in $(seq 1 60); do is_primary "$(pg_port "$s")" && break; sleep 0.25; done
      psql_at "$(pg_port "$s")" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
      psql_at "$(pg_port "$s")" 'SELECT pg_reload_conf()' >/dev/null
      echo "$s" >"$state_dir/pg/primary"
      log "$(pg_name "$s") is the primary (port $(pg_port "$s"))"
      down_since=0
    fi
  done
}

primary_answers() { is_primary "$(pg_port "$(primary)")"; }

cmd_pg_rebuild_standby() {
  local p
  # Right after the primary died the monitor may not have promoted the standby yet.
  wait_for "a PostgreSQL primary (the failover monitor promotes the standby)" primary_answers
  p=$(primary)
  pg_standby_from "$(other "$p")" "$p"
  log "$(pg_name "$(other "$p")") streams from $(pg_name "$p") again (synchronous)"
}

pg_postmaster_pid() { head -1 "$pg_data_root/$1/postmaster.pid" 2>/dev/null; }

# ---- the other processes ---------------------------------------------------------------------
auth_secret() {
  mkdir -p "$state_dir/auth"
  (cd "$project_dir" && "$node_bin" --input-type=module -e "
    import { developmentAuth } from './src/http/dev-auth.ts';
    const auth = developmentAuth(process.argv[1]);
    const token = await auth.issue('cluster-operator', 'operator', { expiresInSeconds: 30 * 24 * 3600 });
    console.log(auth.auth.jwt.secret + ' ' + token);" "$state_dir/auth")
}

payments_key() {
  [[ -f "$state_dir/payments/api-key" ]] || {
    mkdir -p "$state_dir/payments"
    head -c 32 /dev/urandom | base64 | tr -d '=+/\n' >"$state_dir/payments/api-key"
  }
  cat "$state_dir/payments/api-key"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$(pg_port a),127.0.0.1:$(pg_port b)/$database"; }

start_redis() {
  pid_of redis >/dev/null && return
  mkdir -p "$state_dir/redis"
  launch redis "$state_dir/redis/redis.log" redis-server --bind 127.0.0.1 --port "$redis_port" \
    --save "" --appendonly no --dir "$state_dir/redis"
  wait_for Redis bash -c "redis-cli -p $redis_port ping 2>/dev/null | grep -q PONG"
}

start_payments() {
  pid_of payments >/dev/null && return
  local key
  key=$(payments_key)
  MERIDIAN_PAYMENTS_API_KEY=$key launch payments "$state_dir/payments/payments.log" \
    "$node_bin" "$project_dir/apps/commerce/cli/main.ts" payments --port "$payments_port" \
    --data-dir "$state_dir/payments"
  wait_for "the payment gateway" port_open "$payments_port"
}

start_node() { # n
  local n=$1 port=$((node_base_port + $1)) secret
  pid_of "node-$n" >/dev/null && return
  secret=$(auth_secret | cut -d' ' -f1)
  # A node netns-move put in a namespace restarts there.
  local inside=()
  netns_active "$n" && inside=(ip netns exec "$(netns_name "$n")")
  MERIDIAN_PG_URL=$(pg_url) MERIDIAN_KAFKA_BROKERS=$kafka_brokers \
    MERIDIAN_PAYMENTS_URL="http://127.0.0.1:$payments_port" MERIDIAN_PAYMENTS_API_KEY=$(payments_key) \
    MERIDIAN_REDIS_URL="redis://127.0.0.1:$redis_port" MERIDIAN_AUTH_SECRET=$secret \
    launch "node-$n" "$state_dir/node-$n.log" "${inside[@]}" "$node_bin" "$project_dir/apps/commerce/cli/main.ts" node \
    --port "$port" --node-id "node-$n" --replication-factor 3 --check-timeout-ms 30000 \
    ${MERIDIAN_CLUSTER_NODE_ARGS:-}
}

wait_nodes() {
  local n
  for n in $(seq 1 "$node_count"); do
    wait_for "commerce node-$n (see $state_dir/node-$n.log)" http_ok "http://127.0.0.1:$((node_base_port + n))/readyz"
  done
}

# As root, HAProxy reads its config (which may sit in a private checkout no other user can reach)
# and then drops to the haproxy user, as Debian's packaged service does; otherwise it runs as the
# invoking user (the ports are above 1024, so it never needs root).
haproxy_identity() {
  if ((EUID == 0)) && id haproxy >/dev/null 2>&1; then
    printf '  user haproxy\n  group haproxy\n'
  fi
}

write_haproxy_config() {
  local n file="$state_dir/haproxy/haproxy.cfg"
  mkdir -p "$state_dir/haproxy"
  {
    cat <<EOF
# Generated by scripts/cluster/cluster.sh: HAProxy in front of the commerce nodes.
global
  maxconn 4000
$(haproxy_identity)
defaults
  mode http
  option http-keep-alive
  timeout connect 1s
  timeout client 70s
  timeout server 70s
  timeout http-request 10s
  # A connection a dead node refused is tried again on another node: nothing reached the app.
  retries 3
  retry-on conn-failure empty-response
  option redispatch 1
frontend commerce
  bind 127.0.0.1:$http_port
  default_backend nodes
backend nodes
  balance leastconn
  # A node that fails /readyz twice (1 s apart) leaves the rotation; two passes bring it back.
  # (The nodes answer loopback Host names only, so the check names one.)
  option httpchk
  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
  http-check expect status 200
  default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2 on-marked-down shutdown-sessions
EOF
    for n in $(seq 1 "$node_count"); do
      echo "  server node-$n 127.0.0.1:$((node_base_port + n)) check"
    done
    cat <<EOF
listen stats
  bind 127.0.0.1:$stats_port
  stats enable
  stats uri /
  stats refresh 2s
EOF
  } >"$file"
  haproxy -c -q -f "$file" || die "HAProxy refused its generated config $file"
}

start_haproxy() {
  pid_of haproxy >/dev/null && return
  write_haproxy_config
  launch haproxy "$state_dir/haproxy/haproxy.log" haproxy -db -f "$state_dir/haproxy/haproxy.cfg"
  wait_for HAProxy port_open "$http_port"
}

start_kafka() {
  if ! bash "$project_dir/scripts/kafka/kafka.sh" status >/dev/null 2>&1; then
    if [[ -f "$state_dir/kafka/layout" ]]; then
      local id
      for id in 1 2 3; do
        port_open $((19091 + id)) || bash "$project_dir/scripts/kafka/kafka.sh" start-node "$id"
      done
    else
      bash "$project_dir/scripts/kafka/kafka.sh" start cluster
    fi
  fi
}

cmd_start() {
  command -v haproxy >/dev/null || die "HAProxy is not installed: apt-get install -y haproxy"
  command -v redis-server >/dev/null || die "redis-server is not installed: apt-get install -y redis-server"
  mkdir -p "$state_dir"
  local started=$SECONDS n
  log "PostgreSQL primary :$(pg_port a) and synchronous standby :$(pg_port b) ..."
  start_pg
  log "Kafka, three brokers (41 s the first time) ..."
  start_kafka
  log "Redis, the payment gateway, $node_count commerce nodes, HAProxy ..."
  start_redis
  start_payments
  for n in $(seq 1 "$node_count"); do start_node "$n"; done
  wait_nodes
  start_haproxy
  wait_for "HAProxy with a ready node" http_ok "http://127.0.0.1:$http_port/readyz"
  log "up in $((SECONDS - started)) s"
  cmd_endpoints
}

cmd_endpoints() {
  local token n
  token=$(auth_secret | cut -d' ' -f2)
  cat <<EOF

Meridian commerce cluster

  Commerce API   http://127.0.0.1:$http_port   (HAProxy over the nodes; health check GET /readyz)
  HAProxy stats  http://127.0.0.1:$stats_port/
EOF
  for n in $(seq 1 "$node_count"); do
    printf '  node-%s         http://127.0.0.1:%s   (pid %s, log %s)\n' "$n" $((node_base_port + n)) \
      "$(pid_of "node-$n" || echo down)" "$state_dir/node-$n.log"
  done
  cat <<EOF
  Payments       http://127.0.0.1:$payments_port   (simulated gateway, ledger $state_dir/payments/payments.jsonl)
  PostgreSQL     $(pg_url)   (primary :$(pg_port "$(primary)"), synchronous standby :$(pg_port "$(other "$(primary)")"))
  Kafka          $kafka_brokers   (replication factor 3, min.insync.replicas=2)
  Redis          redis://127.0.0.1:$redis_port
  State, logs    $state_dir

  Operator token (30 days):
    export MERIDIAN_TOKEN=$token

  Try:
    curl -s -X PUT localhost:$http_port/inventory/book -H "authorization: Bearer \$MERIDIAN_TOKEN" \\
         -H 'content-type: application/json' -d '{"available":100,"price":12.5}'
    npm run commerce -- load --url http://127.0.0.1:$http_port --rate 50 --duration 30
    bash scripts/cluster/cluster.sh kill node-2     # then watch the orders finish
  Stop (deletes the data): npm run cluster:stop
EOF
}

cmd_env() {
  local token
  token=$(auth_secret | cut -d' ' -f2)
  echo "export MERIDIAN_CLUSTER_URL=http://127.0.0.1:$http_port MERIDIAN_CLUSTER_PAYMENTS_URL=http://127.0.0.1:$payments_port MERIDIAN_CLUSTER_PG_URL=$(pg_url) MERIDIAN_TOKEN=$token"
}

stop_pid() { # name
  local pid
  pid=$(pid_of "$1") || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do pid_of "$1" >/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
  local n side
  stop_pid haproxy
  for n in $(seq 1 9); do stop_pid "node-$n"; done
  # Namespaces of netns-move (their bridges, veth pairs and filters), by name: none survives a stop.
  for n in $(seq 1 9); do netns_down "$n"; done
  stop_pid payments
  stop_pid redis
  stop_pid pg-monitor
  for side in a b; do
    pg_exists "$side" && pg_dropcluster --stop "$pg_version" "$(pg_name "$side")"
    # pg_dropcluster leaves the directory behind when it holds a file it did not write (conf.d).
    rm -rf "/etc/postgresql/$pg_version/$(pg_name "$side")"
  done
  rm -rf "$pg_data_root"
  [[ -f "$state_dir/kafka/layout" ]] && bash "$project_dir/scripts/kafka/kafka.sh" stop
  rm -rf "$state_dir"
  log "stopped; data deleted"
}

cmd_status() {
  local ok=0 n name
  for name in haproxy payments redis pg-monitor $(for n in $(seq 1 "$node_count"); do echo "node-$n"; done); do
    if pid_of "$name" >/dev/null; then echo "$name up"; else echo "$name down"; ok=1; fi
  done
  for side in a b; do
    if pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$side")"; then
      echo "$(pg_name "$side") up ($(is_primary "$(pg_port "$side")" && echo primary || echo standby))"
    else
      echo "$(pg_name "$side") down"
      ok=1
    fi
  done
  bash "$project_dir/scripts/kafka/kafka.sh" status || ok=1
  return $ok
}

cmd_kill() { # name
  local pid
  case $1 in
  node-[1-9] | payments | redis | haproxy)
    pid=$(pid_of "$1") || die "$1 is not running"
    kill -KILL "$pid"
    ;;
  kafka-[1-3]) bash "$project_dir/scripts/kafka/kafka.sh" stop-node "${1#kafka-}" --kill ;;
  pg-primary | pg-standby)
    local side
    side=$(primary)
    [[ $1 == pg-standby ]] && side=$(other "$side")
    pid=$(pg_postmaster_pid "$side")
    [[ -n $pid ]] || die "$(pg_name "$side") is not running"
    kill -KILL "$pid"
    ;;
  *) die "unknown process '$1': node-1..node-$node_count, payments, redis, haproxy, kafka-1..kafka-3, pg-primary, pg-standby" ;;
  esac
}

cmd_restart() { # name
  case $1 in
  node-[1-9]) start_node "${1#node-}" ;;
  payments) start_payments ;;
  redis) start_redis ;;
  haproxy) start_haproxy ;;
  kafka-[1-3]) bash "$project_dir/scripts/kafka/kafka.sh" start-node "${1#kafka-}" ;;
  *) die "unknown process '$1': node-1..node-$node_count, payments, redis, haproxy, kafka-1..kafka-3" ;;
  esac
}

cmd_pg_restart() {
  local p
  p=$(primary)
  # A planned restart: the monitor must not promote the standby meanwhile (maintenance mode).
  touch "$state_dir/pg/maintenance"
  pg_ctl_cluster "$p" stop -m immediate
  pg_ctl_cluster "$p" start
  wait_for "PostgreSQL primary" pg_isready -U postgres -q -h 127.0.0.1 -p "$(pg_port "$p")"
  rm -f "$state_dir/pg/maintenance"
}

# ---- a node in a network namespace (the node-partition fault) --------------------------------
# netns-move node-N restarts node N, with the same settings, in a network namespace of its own,
# joined to this one by a veth pair on 10.231.N.0/30 and socat bridges: inside, its dependencies'
# ports on 127.0.0.1 lead over the veth to the real ones; outside, its HTTP port on 127.0.0.1 leads
# to it, so HAProxy and clients see no change. netns-cut drops the PostgreSQL and Kafka packets on
# the veth, both ways, silently (no reset, no ICMP: a partition, not a refusal; tc's mirred
# redirects them to a veth left down), while its HTTP, Redis and payment traffic still flow;
# netns-heal lets them through again; netns-remove brings the node back to this namespace.
tc_bin=$(command -v tc || echo /usr/sbin/tc)
netns_name() { echo "meridian-node-$1"; }
netns_dir() { echo "$state_dir/netns/node-$1"; }
netns_root_ip() { echo "10.231.$1.1"; }
netns_ip() { echo "10.231.$1.2"; }
netns_active() { [[ -f "$(netns_dir "$1")/active" ]]; }
# What the node reaches (bridged), and what netns-cut cuts of it.
cut_ports() { echo "$(pg_port a) $(pg_port b) 19092 19093 19094"; }
dependency_ports() { echo "$(cut_ports) $redis_port $payments_port"; }

netns_node() { # node-N: prints N
  [[ ${1:-} =~ ^node-([1-9])$ ]] || die "takes node-1..node-$node_count: current value is '${1:-}'"
  echo "${BASH_REMATCH[1]}"
}

netns_check() {
  ((EUID == 0)) || die "network namespaces need root (ip netns add): run as root"
  command -v socat >/dev/null || die "socat is not installed: apt-get install -y socat"
  [[ -x $tc_bin ]] || die "tc is not installed: apt-get install -y iproute2"
}

bridge() { # name namespace('' for this one) listen-address port target-address
  local name=$1 ns=$2 cmd=(socat "TCP-LISTEN:$4,bind=$3,reuseaddr,fork" "TCP:$5:$4")
  [[ -z $ns ]] || cmd=(ip netns exec "$ns" "${cmd[@]}")
  launch "$name" "$state_dir/netns/socat.log" "${cmd[@]}"
}

netns_up() { # n: the namespace, its veth pair and every bridge but the outside HTTP one
  local n=$1 ns dir port
  ns=$(netns_name "$n")
  dir=$(netns_dir "$n")
  mkdir -p "$dir"
  ip netns add "$ns"
  ip link add "mrd-node-$n" type veth peer name "mrd-node-$n-ns" netns "$ns"
  ip addr add "$(netns_root_ip "$n")/30" dev "mrd-node-$n"
  ip link set "mrd-node-$n" up
  ip -n "$ns" addr add "$(netns_ip "$n")/30" dev "mrd-node-$n-ns"
  ip -n "$ns" link set "mrd-node-$n-ns" up
  ip -n "$ns" link set lo up
  # Where netns-cut sends what it drops: a veth left down (this kernel has no drop action).
  ip -n "$ns" link add mrd-hole type veth peer name mrd-hole-peer
  for port in $(dependency_ports); do
    bridge "netns/node-$n/out-$port" '' "$(netns_root_ip "$n")" "$port" 127.0.0.1
    bridge "netns/node-$n/in-$port" "$ns" 127.0.0.1 "$port" "$(netns_root_ip "$n")"
  done
  bridge "netns/node-$n/http-in" "$ns" "$(netns_ip "$n")" $((node_base_port + n)) 127.0.0.1
  touch "$dir/active"
}

netns_down() { # n: stops the bridges, deletes the namespace (its veth pair and filters with it)
  local n=$1 file
  for file in "$(netns_dir "$n")"/*.pid; do
    [[ -f $file ]] || continue
    file=${file#"$state_dir/"}
    stop_pid "${file%.pid}"
  done
  ip netns del "$(netns_name "$n")" 2>/dev/null || true
  ip link del "mrd-node-$n" 2>/dev/null || true
  rm -rf "$(netns_dir "$n")"
}

cmd_netns_move() { # node-N
  local n
  n=$(netns_node "$1")
  netns_check
  netns_active "$n" && return
  stop_pid "node-$n"
  netns_down "$n"
  netns_up "$n"
  bridge "netns/node-$n/http-out" '' 127.0.0.1 $((node_base_port + n)) "$(netns_ip "$n")"
  start_node "$n"
  wait_for "node-$n in namespace $(netns_name "$n") (see $state_dir/node-$n.log)" \
    http_ok "http://127.0.0.1:$((node_base_port + n))/readyz"
  log "node-$n runs in network namespace $(netns_name "$n") ($(netns_ip "$n")), bridged to 127.0.0.1"
}

cmd_netns_cut() { # node-N
  local n ns dev port
  n=$(netns_node "$1")
  netns_active "$n" || die "node-$n is not in a network namespace: 'cluster.sh netns-move node-$n' first"
  ns=$(netns_name "$n")
  dev=mrd-node-$n-ns
  ip netns exec "$ns" "$tc_bin" qdisc del dev "$dev" clsact 2>/dev/null || true # a cut already there
  ip netns exec "$ns" "$tc_bin" qdisc add dev "$dev" clsact
  for port in $(cut_ports); do
    ip netns exec "$ns" "$tc_bin" filter add dev "$dev" egress protocol ip prio 1 u32 \
      match ip protocol 6 0xff match ip dport "$port" 0xffff action mirred egress redirect dev mrd-hole
    ip netns exec "$ns" "$tc_bin" filter add dev "$dev" ingress protocol ip prio 1 u32 \
      match ip protocol 6 0xff match ip sport "$port" 0xffff action mirred egress redirect dev mrd-hole
  done
  log "node-$n cut off PostgreSQL and Kafka (ports $(cut_ports)); its HTTP still answers"
}

cmd_netns_heal() { # node-N
  local n
  n=$(netns_node "$1")
  netns_active "$n" || return 0
  ip netns exec "$(netns_name "$n")" "$tc_bin" qdisc del dev "mrd-node-$n-ns" clsact 2>/dev/null || true
  log "node-$n reaches PostgreSQL and Kafka again"
}

cmd_netns_remove() { # node-N: back to this namespace, restarted
  local n
  n=$(netns_node "$1")
  stop_pid "node-$n"
  netns_down "$n"
  start_node "$n"
  wait_for "node-$n (see $state_dir/node-$n.log)" http_ok "http://127.0.0.1:$((node_base_port + n))/readyz"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
endpoints) cmd_endpoints ;;
env) cmd_env ;;
kill) cmd_kill "${2:?name}" ;;
drain)
  [[ ${2:-} =~ ^node-[1-9]$ ]] || die "drain takes node-1..node-$node_count"
  stop_pid "$2"
  ;;
restart) cmd_restart "${2:?name}" ;;
pg-restart) cmd_pg_restart ;;
pg-rebuild-standby) cmd_pg_rebuild_standby ;;
pg-primary) pg_port "$(primary)" ;;
pg-monitor) cmd_pg_monitor ;;
netns-move) cmd_netns_move "${2:-}" ;;
netns-cut) cmd_netns_cut "${2:-}" ;;
netns-heal) cmd_netns_heal "${2:-}" ;;
netns-remove) cmd_netns_remove "${2:-}" ;;
*)
 sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac

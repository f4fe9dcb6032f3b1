#!/usr/bin/env bash
# Kafka's own perf tools against a running broker: the ceiling for a Node client on this machine.
# For each value size it creates a fresh 4-partition topic, runs
#   org.apache.kafka.tools.ProducerPerformance  (acks=all, idempotent, as the kafka log produces)
#   org.apache.kafka.tools.ConsumerPerformance  (one consumer of a fresh group, from the start)
# and prints one line per size in bench:log's form. Start a broker first (npm run kafka:start).
#
#   bash scripts/kafka/perf.sh                      # 127.0.0.1:9092, or $MERIDIAN_TEST_KAFKA_BROKERS
#   PERF_RECORDS_100=2000000 bash scripts/kafka/perf.sh
#   PERF_PRODUCER_PROPS='batch.size=131072 linger.ms=10' bash scripts/kafka/perf.sh   # tuned producer
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(cd "$script_dir/../.." && pwd)
brokers=${MERIDIAN_TEST_KAFKA_BROKERS:-127.0.0.1:9092}
libs=$(bash "$script_dir/kafka.sh" fetch)
work_dir=${MERIDIAN_KAFKA_DIR:-$project_dir/.kafka}/perf
mkdir -p "$work_dir"
# Bounded: at most a few million records per size, so a run stays within a couple of minutes.
records_100=${PERF_RECORDS_100:-1000000}
records_1024=${PERF_RECORDS_1024:-300000}
# Extra producer settings, space-separated key=value (Kafka's defaults when empty).
extra_props=${PERF_PRODUCER_PROPS:-}
[[ $extra_props =~ ^([A-Za-z0-9._-]+=[A-Za-z0-9._-]+( |$))*$ ]] ||
  { echo "PERF_PRODUCER_PROPS must be space-separated key=value pairs: got '$extra_props'" >&2; exit 2; }
for count in "$records_100" "$records_1024"; do
  [[ $count =~ ^[0-9]+$ ]] && ((count > 0 && count <= 10000000)) ||
    { echo "record counts must be in [1, 10000000]: got '$count'" >&2; exit 2; }
done

cat >"$work_dir/log4j2.properties" <<'EOF'
# The tools print their results on stdout; their own logging goes to stderr, warnings only.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF

tool() { # class args...
  java -Xmx512m -Dlog4j2.configurationFile="$work_dir/log4j2.properties" -cp "$libs/*" "$@"
}

run_size() { # value-bytes records
  local size=$1 records=$2 topic group produced consumed
  topic="perf-${size}b-$$-$RANDOM"
  group="perf-$topic"
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --create --topic "$topic" \
    --partitions 4 >/dev/null
  # The last line: "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, ..."
  produced=$(tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
    --record-size "$size" --throughput -1 \
    --producer-props "bootstrap.servers=$brokers" acks=all enable.idempotence=true $extra_props | tail -n 1)
  # CSV: start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s
  consumed=$(tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$brokers" --topic "$topic" \
    --messages "$records" --group "$group" --timeout 60000 | tail -n 1)
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --delete --topic "$topic" >/dev/null
  local produce_rate produce_mb consume_rate fetch_rate
  produce_rate=$(sed -n 's/.* records sent, \([0-9.]*\) records\/sec (\([0-9.]*\) MB\/sec).*/\1/p' <<<"$produced")
  produce_mb=$(sed -n 's/.* records sent, \([0-9.]*\) records\/sec (\([0-9.]*\) MB\/sec).*/\2/p' <<<"$produced")
  consume_rate=$(cut -d, -f6 <<<"$consumed" | tr -d ' ')
  fetch_rate=$(cut -d, -f10 <<<"$consumed" | tr -d ' ')
  [[ -n $produce_rate && -n $consume_rate ]] || {
    echo "could not parse the tools' output: '$produced' / '$consumed'" >&2
    exit 1
  }
  printf 'kafka-perf  acks=all%s  value=%4dB  records=%7d  append=%10.0f rec/s (%5.1f MB/s)  consume=%10.0f rec/s (fetching only: %.0f rec/s)\n' \
    "${extra_props:+ ($extra_props)}" "$size" "$records" "$produce_rate" "$produce_mb" "$consume_rate" "${fetch_rate:-0}"
}

echo "# kafka perf tools · brokers $brokers · $(nproc) cores · load $(cut -d' ' -f1 /proc/loadavg) · $(date -u +%FT%TZ)"
run_size 100 "$records_100"
run_size 1024 "$records_1024"

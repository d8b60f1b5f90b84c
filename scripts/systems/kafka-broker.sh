#!/usr/bin/env bash
# Runs a single-node Apache Kafka (KRaft: broker and controller in one JVM) in the foreground
# from the jars kafka.sh fetched: plain listener on 127.0.0.1:PORT, controller on PORT+1, log
# dir DIR/data (formatted on first use, kept after), its own log in DIR/server.log, topics
# created on first use with 2 partitions. For benches and trying trawl by hand; the tests start
# their own brokers (tests/support/kafka/mod.rs).
# Usage: scripts/systems/kafka-broker.sh DIR PORT
set -euo pipefail

dir="$(mkdir -p "$1" && cd "$1" && pwd)"
port="$2"
lib="${TRAWL_SYSTEMS_DIR:-/var/cache/trawl-systems}/kafka/lib"
if ! ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1; then
  echo "Apache Kafka is not in $lib: run scripts/setup.sh" >&2
  exit 1
fi

cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=4194304
PROPS
cat >"$dir/log4j2.properties" <<LOG
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
LOG

java_cmd=(java -cp "$lib/*" -Xmx256m -Xms32m -XX:+UseSerialGC -XX:-UsePerfData
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties")
if [ ! -f "$dir/data/meta.properties" ]; then
  "${java_cmd[@]}" kafka.tools.StorageTool format -t q1Sh-9_ISia_zwGINzRvyQ \
    -c "$dir/server.properties" >/dev/null
fi
exec "${java_cmd[@]}" kafka.Kafka "$dir/server.properties"

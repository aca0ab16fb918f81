#!/usr/bin/env bash
# Creates the consent topics; safe to run again (existing topics are left alone).
# Runs in the apache/kafka image: the topic Job of deploy/k8s and the `topics` service of
# deploy/compose.yaml. Mirrors consent.adapters.kafka.topic_specs: the events and state
# topics share one partition count (the key is the subject id, so one subject's events
# stay in order), the state topic is compacted (latest state per subject), the dead-letter
# topic has one partition.
#
#   KAFKA_BOOTSTRAP       host:port,...                      (required)
#   TOPIC_PREFIX          same value as CONSENT_TOPIC_PREFIX (default: empty)
#   PARTITIONS            events and state partitions        (default: 6)
#   REPLICATION_FACTOR    1 for one broker, 3 in production  (default: 1)
#   MIN_INSYNC_REPLICAS   1 for one broker, 2 in production  (default: 1)
#   KAFKA_CLIENT_CONFIG   client .properties for SASL/TLS, used when the file is not empty
#   KAFKA_BIN_DIR         where kafka-topics.sh is             (default: /opt/kafka/bin)
set -euo pipefail

: "${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is required}"
prefix="${TOPIC_PREFIX:-}"
partitions="${PARTITIONS:-6}"
rf="${REPLICATION_FACTOR:-1}"
min_isr="${MIN_INSYNC_REPLICAS:-1}"

args=(--bootstrap-server "$KAFKA_BOOTSTRAP")
if [[ -s "${KAFKA_CLIENT_CONFIG:-}" ]]; then
  args+=(--command-config "$KAFKA_CLIENT_CONFIG")
fi

kt() { "${KAFKA_BIN_DIR:-/opt/kafka/bin}/kafka-topics.sh" "${args[@]}" "$@"; }

create() {
  local name="$1" count="$2"
  shift 2
  kt --create --if-not-exists --topic "${prefix}${name}" --partitions "$count" \
    --replication-factor "$rf" --config "min.insync.replicas=${min_isr}" "$@"
}

create consent.events.v1 "$partitions"
create consent.state.v1 "$partitions" --config cleanup.policy=compact
create consent.deadletter.v1 1
# signed checkpoints of the transparency log: one partition, never compacted, kept forever
create consent.checkpoints.v1 1 --config retention.ms=-1
# between the two services (issue 16): receipts and audit entries, propagator → consent;
# replays restricted to processors, consent → propagator. Nobody else reads them.
create consent.receipts.v1 "$partitions"
create consent.replays.v1 "$partitions"

for name in consent.events.v1 consent.state.v1 consent.deadletter.v1 consent.receipts.v1 \
  consent.replays.v1 consent.checkpoints.v1; do
  kt --describe --topic "${prefix}${name}"
done

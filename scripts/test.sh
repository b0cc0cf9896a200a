#!/usr/bin/env bash
# The test suite: unit, property, crash (real SIGKILLs at named crash points), corruption,
# CLI end-to-end and fuzz-regression tests. Runs on a fresh machine with only Rust installed;
# later steps (object storage, Kafka clients) install what they need here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --features failpoints

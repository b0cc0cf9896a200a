#!/usr/bin/env bash
# A short tour on an embedded default store: append, replay, seek by time, consumer groups.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
tk="$PWD/target/release/trailkeep"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
export TRAILKEEP_DIR="$dir"
echo "== store in $dir"
for i in $(seq 1 5); do
  echo "{\"trace\":\"t$((i % 2))\",\"kind\":\"tool_call\",\"step\":$i}"
done | "$tk" append agent-trail --key-field trace --print-offsets
sleep 0.01
mid=$(date +%s%3N)
for i in $(seq 6 8); do
  echo "{\"trace\":\"t$((i % 2))\",\"kind\":\"final_action\",\"step\":$i}"
done | "$tk" append agent-trail --key-field trace
echo "== replay everything"
"$tk" read agent-trail
echo "== seek by time: records appended at or after $mid ms"
"$tk" read agent-trail --from-time "$mid" --format raw
echo "== a consumer group reads 3, then resumes"
"$tk" read agent-trail --group evaluator --limit 3 --format raw
"$tk" groups agent-trail
"$tk" read agent-trail --group evaluator --format raw
"$tk" stats

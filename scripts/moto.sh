#!/usr/bin/env bash
# The S3-compatible test server (moto) for tests/tier_s3.rs.
#   scripts/moto.sh install        create .venv with moto[server] (idempotent, quiet)
#   scripts/moto.sh serve [PORT]   run it in the foreground on 127.0.0.1 (default 5000)
# The tests start their own server on a free port from $TRAILKEEP_MOTO_PYTHON
# (default .venv/bin/python); this script only installs it, or runs one by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-install}" in
  install)
    if ! .venv/bin/python -c 'import moto.server, boto3' >/dev/null 2>&1; then
      python3 -m venv .venv
      .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]'
    fi
    ;;
  serve)
    exec .venv/bin/python -m moto.server -H 127.0.0.1 -p "${2:-5000}"
    ;;
  *)
    echo "usage: scripts/moto.sh install | serve [PORT]" >&2
    exit 2
    ;;
esac

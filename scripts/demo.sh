#!/usr/bin/env bash
# Set up .venv if needed, then run the end-to-end demo (see README). Extra arguments go to depth-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
exec .venv/bin/depth-demo "$@"

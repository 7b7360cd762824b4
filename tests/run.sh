#!/usr/bin/env bash
# The test command: installs whatever the active Python lacks, then runs the whole suite on CPU.
#   bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pipeline.deps --tests
exec "$PYTHON" -m pytest tests -q -p no:cacheprovider "$@"

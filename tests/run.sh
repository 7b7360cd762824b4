#!/usr/bin/env bash
# The test command: installs whatever the active Python lacks, then runs the whole suite on CPU, in two
# processes (pytest-xdist; each keeps to one thread, tests/conftest.py): 8.5 min instead of ~12 on 2 cores.
#   bash tests/run.sh [pytest args...]      e.g. -m "not slow" (the quick loop), tests/test_rle.py, -n 0 (one process)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pipeline.deps --tests
exec "$PYTHON" -m pytest tests -q -p no:cacheprovider -n 2 --dist loadfile "$@"

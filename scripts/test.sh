#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests, and integration tests on a real Kafka broker
# and schema registry (started by the tests themselves when none is given).
# Extra arguments go to pytest, e.g. scripts/test.sh -k roundtrip
source "$(dirname "$0")/_env.sh"

echo "==> ruff"
ruff check hub connectors tests
ruff format --check hub connectors tests
echo "==> mypy"
mypy
echo "==> pytest"
start=$(date +%s)
set +e
python -m pytest "$@"
status=$?
set -e
echo "==> pytest finished in $(( $(date +%s) - start ))s with exit code $status"
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
fi
exit "$status"

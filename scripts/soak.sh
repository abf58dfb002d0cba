#!/usr/bin/env bash
# The soak run (issue #8): its own local stack, one hub worker, a fixed event rate for a
# bounded time; resident memory and consumer lag sampled, input = output checked at the end.
# Exit 1 if memory or lag grew more than 10% after warm-up or anything was lost, duplicated
# or reordered. Options go to bench/soak.py, e.g. scripts/soak.sh --minutes 3 --rate 40;
# on a three-broker cluster with one broker killed midway: scripts/soak.sh --cluster
# --minutes 30 --rate 500 --workers 2 (issue 16)
source "$(dirname "$0")/_env.sh"

exec python -m bench.soak "$@"

#!/usr/bin/env bash
# The main job: local broker and registry, one hub worker and a simulated province.
# Options go to `hub demo` (see `hub demo --help`), e.g. --dossiers 1000 --rate 500.
source "$(dirname "$0")/_env.sh"
exec hub demo "$@"

#!/usr/bin/env bash
# The full-link soak of issue 11: tests/fault/ic-load.sh with a long window
# (SOAK_SECONDS, default 60) on two tbf-limited 200 Mbit/s links with about
# 2 MiB queued per link: passes with 0 take-outs on either node, then runs
# the test's other steps (partner stall with one link cut, both lanes out).
# Needs root, tc, nft, jq, ss (as the test).
#
#   bench/soak-tbf.sh [BUILD_DIR]     (BUILD_DIR default: build)
#
# Env: SOAK_SECONDS (60), SOAK_PORT_BASE (44900), IC_LOAD_RATE (200mbit).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export DUET_BUILD=${1:-${DUET_BUILD:-build}}
export IC_LOAD_SECS=${SOAK_SECONDS:-60}
export DUET_PORT_BASE=${SOAK_PORT_BASE:-44900}
exec bash "$ROOT/tests/fault/ic-load.sh"

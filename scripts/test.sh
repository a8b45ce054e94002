#!/usr/bin/env bash
# test.sh: THE test command (README, CI). On a fresh Debian 12 machine: installs what is missing
# (scripts/setup.sh), builds build/ (warnings are errors) and build-asan/ (AddressSanitizer +
# UBSan, unit tests only), runs the unit tests under the sanitizers, then every test (unit +
# integration against a throwaway PostgreSQL + Kafka stack that ctest starts and stops).
# Idempotent; exits non-zero when anything fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
START=$SECONDS
JOBS=$(nproc 2>/dev/null || echo 2)

step() { printf '\n==> %s\n' "$*"; }
finish() {
    local rc=$?
    printf '\n==> test.sh: %s in %ss\n' "$([[ $rc -eq 0 ]] && echo OK || echo "FAILED (exit $rc)")" \
        "$((SECONDS - START))"
}
trap finish EXIT

step "setup (dependencies, Kafka jars)"
bash scripts/setup.sh

step "build: build/ (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIPECTL_WERROR=ON \
    -DPIPECTL_SANITIZE=OFF -DPIPECTL_UNIT_ONLY=OFF >/dev/null
cmake --build build -j"$JOBS"

step "build: build-asan/ (ASan + UBSan, unit tests only)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPIPECTL_WERROR=ON \
    -DPIPECTL_SANITIZE=ON -DPIPECTL_UNIT_ONLY=ON >/dev/null
cmake --build build-asan -j"$JOBS"

step "unit tests under ASan/UBSan"
ctest --test-dir build-asan -L unit --output-on-failure --no-tests=error

step "all tests (unit + integration)"
ctest --test-dir build --output-on-failure --no-tests=error -j1

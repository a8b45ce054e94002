# bench/lib.sh: sourced by bench/*/run.sh so that a newcomer runs any benchmark on a fresh clone
# with one command, as the test command does: scripts/setup.sh installs what is missing
# (Debian packages, Kafka jars; idempotent and quick when everything is there), then the build
# directory is configured when new and the targets the benchmark runs are built.
# shellcheck shell=bash

# bench_prepare BUILD_DIR TARGET...: setup, configure (RelWithDebInfo) when needed, build.
bench_prepare() {
    local root build
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    build=$1
    shift
    bash "$root/scripts/setup.sh" >&2
    if [[ ! -f "$build/CMakeCache.txt" ]]; then
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
    fi
    cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "$@" >&2
}

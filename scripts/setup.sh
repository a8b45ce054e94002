#!/usr/bin/env bash
# setup.sh: install what pipectl's build, tests and demo need on Debian 12. Idempotent and fast when
# everything is present (no apt-get update, no Maven run).
#   1. Debian packages: installed only when one is missing (apt-get update only then).
#   2. Kafka broker + CLI jars (Maven Central, scripts/kafka/pom.xml) into .cache/kafka/libs,
#      fetched again only when the folder is missing or the pom changed (sha256 stamp).
#   3. s3proxy jars (Maven Central, scripts/s3proxy/pom.xml) into .cache/s3proxy/libs, likewise.
#   4. NocoDB + playwright-core for the integration tests (npm registry, scripts/nocodb.sh
#      install) into .cache/nocodb, again only when scripts/nocodb/package.json or Node changed.
# Runs as root, or through sudo when not root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev librdkafka-dev libcurl4-openssl-dev libyaml-dev libarchive-dev libgit2-dev
    libjansson-dev libmicrohttpd-dev libcmocka-dev libssl-dev libyajl-dev
    postgresql-15 postgresql-client-15
    default-jdk-headless maven git
    python3-jsonschema python3-yaml python3-venv clang-format jq pgbackrest strace curl bc zstd
    nodejs chromium
)

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        log "missing Debian packages: ${missing[*]}"
        log "not root and no sudo: install them as root (apt-get install ${missing[*]}) and re-run"
        exit 1
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    log "packages installed"
fi
# Debian's nodejs ships npm separately (NodeSource's nodejs includes it)
if ! command -v npm >/dev/null 2>&1; then
    log "installing: npm"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        npm >/dev/null
fi

# maven_jars WHAT POM CACHE: the runtime jars POM lists, copied by Maven into CACHE/libs, fetched
# again only when POM changes (its SHA-256 is kept in CACHE/pom.sha256).
maven_jars() {
    local what=$1 pom=$2 cache=$3
    local libs="$cache/libs" stamp="$cache/pom.sha256" want have
    want=$(sha256sum "$pom" | cut -d' ' -f1)
    have=$(cat "$stamp" 2>/dev/null || true)
    [[ -d "$libs" && "$want" == "$have" ]] && return 0
    log "fetching $what jars with Maven into $libs"
    mkdir -p "$cache"
    rm -rf "$libs" "$libs.tmp" "$stamp"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$libs.tmp" >"$cache/mvn.log" 2>&1; then
        tail -n 40 "$cache/mvn.log" >&2
        log "Maven could not fetch the $what jars (log above, full log in $cache/mvn.log)"
        exit 1
    fi
    mv "$libs.tmp" "$libs"
    echo "$want" >"$stamp"
    log "$what jars ready ($(find "$libs" -name '*.jar' | wc -l) jars)"
}

# Kafka jars, and s3proxy's (the S3-compatible test server, scripts/s3_stack.sh).
maven_jars Kafka "$ROOT/scripts/kafka/pom.xml" "$ROOT/.cache/kafka"
maven_jars s3proxy "$ROOT/scripts/s3proxy/pom.xml" "$ROOT/.cache/s3proxy"

# NocoDB for the integration tests (cached; instant when up to date).
bash "$ROOT/scripts/nocodb.sh" install

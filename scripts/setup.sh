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

# Kafka jars.
POM="$ROOT/scripts/kafka/pom.xml"
CACHE="$ROOT/.cache/kafka"
LIBS="$CACHE/libs"
STAMP="$CACHE/pom.sha256"
want=$(sha256sum "$POM" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ ! -d "$LIBS" || "$want" != "$have" ]]; then
    log "fetching Kafka jars with Maven into $LIBS"
    mkdir -p "$CACHE"
    rm -rf "$LIBS" "$LIBS.tmp" "$STAMP"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$LIBS.tmp" >"$CACHE/mvn.log" 2>&1; then
        tail -n 40 "$CACHE/mvn.log" >&2
        log "Maven could not fetch the Kafka jars (log above, full log in $CACHE/mvn.log)"
        exit 1
    fi
    mv "$LIBS.tmp" "$LIBS"
    echo "$want" >"$STAMP"
    log "Kafka jars ready ($(find "$LIBS" -name '*.jar' | wc -l) jars)"
fi

# s3proxy jars (the S3-compatible test server, scripts/s3_stack.sh), the same way.
S3_POM="$ROOT/scripts/s3proxy/pom.xml"
S3_CACHE="$ROOT/.cache/s3proxy"
S3_LIBS="$S3_CACHE/libs"
S3_STAMP="$S3_CACHE/pom.sha256"
want=$(sha256sum "$S3_POM" | cut -d' ' -f1)
have=$(cat "$S3_STAMP" 2>/dev/null || true)
if [[ ! -d "$S3_LIBS" || "$want" != "$have" ]]; then
    log "fetching s3proxy jars with Maven into $S3_LIBS"
    mkdir -p "$S3_CACHE"
    rm -rf "$S3_LIBS" "$S3_LIBS.tmp" "$S3_STAMP"
    if ! mvn -q -B -f "$S3_POM" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$S3_LIBS.tmp" >"$S3_CACHE/mvn.log" 2>&1; then
        tail -n 40 "$S3_CACHE/mvn.log" >&2
        log "Maven could not fetch the s3proxy jars (log above, full log in $S3_CACHE/mvn.log)"
        exit 1
    fi
    mv "$S3_LIBS.tmp" "$S3_LIBS"
    echo "$want" >"$S3_STAMP"
    log "s3proxy jars ready ($(find "$S3_LIBS" -name '*.jar' | wc -l) jars)"
fi

# NocoDB for the integration tests (cached; instant when up to date).
bash "$ROOT/scripts/nocodb.sh" install

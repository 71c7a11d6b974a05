#!/usr/bin/env bash
# README's two commands on a fresh machine: in a bare Debian bookworm container (the local
# base the Docker smoke makes, nothing on it but Python 3), on a clean copy of the checkout,
#
#   bash scripts/bootstrap demo     (with a small budget)
#   bash scripts/bootstrap test     (the fast cases: CI runs the whole suite on the host)
#
# must both succeed, installing everything else themselves.
#
#   bash scripts/fresh-machine-check.sh     # as root; after scripts/docker-smoke.sh (same base)
#
# Network: the container uses the host's network (--network host) only to reach Debian's and
# PyPI's package servers through apt and pip; the host's CA bundle is mounted read-only for
# pip, as it is for the image build. pip's downloads are cached in $CACHE/pip between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY_BASE=python:3.11-slim-bookworm
LOCAL_BASE=copycat-tf-base:bookworm
CACHE=${COPYCAT_DOCKER_CACHE:-/var/cache/copycat-tf}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
#: The tests that need root on the host (network namespaces for the model server) or are
#: slow are left to CI's run of the whole suite on the host.
TEST_SELECTION="not slow and not server"

work=$(mktemp -d "${TMPDIR:-/tmp}/copycat-fresh.XXXXXX")
say() { echo "fresh-machine: $*"; }
fail() {
    echo "fresh-machine: FAILED: $*" >&2
    exit 1
}

# shellcheck source=scripts/docker-setup.sh
source scripts/docker-setup.sh

# A clean copy of the checkout: the files git tracks, as committed or edited, nothing built.
mkdir -p "$work/src" "$CACHE/pip"
git ls-files -z | tar --null -T - -cf - | tar -C "$work/src" -xf -

mounts=(-v "$work/src:/src" -v "$CACHE/pip:/root/.cache/pip")
[ ! -s "$CA_BUNDLE" ] || mounts+=(-v "$CA_BUNDLE:/host-ca.crt:ro" -e PIP_CERT=/host-ca.crt)
say "README's two commands in a fresh $base container"
start=$SECONDS
docker run --rm --network host "${mounts[@]}" -w /src -e TEST_SELECTION="$TEST_SELECTION" "$base" bash -c '
    set -euo pipefail
    # The machine as the README assumes it: Debian with Python 3 (no pip, no venv, nothing else).
    if ! command -v python3 >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 ca-certificates >/dev/null
    fi
    echo "fresh-machine: the machine has $(python3 --version); no pip: $(python3 -m pip --version >/dev/null 2>&1 && echo no || echo yes)"
    bash scripts/bootstrap demo --budget 2000 --out /tmp/demo
    test -s /tmp/demo/steal/report/report.json
    echo "fresh-machine: ok: bash scripts/bootstrap demo"
    bash scripts/bootstrap test -m "$TEST_SELECTION" -p no:cacheprovider
    echo "fresh-machine: ok: bash scripts/bootstrap test"
    start=$(date +%s)
    bash scripts/bootstrap demo --budget 2000 --out /tmp/demo >/dev/null
    echo "fresh-machine: ok: a rerun with nothing changed took $(( $(date +%s) - start )) s"
' || fail "the two commands in a fresh container"
say "ok: both commands passed in $((SECONDS - start)) s"

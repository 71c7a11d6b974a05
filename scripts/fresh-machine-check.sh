#!/usr/bin/env bash
# README's two commands on a fresh machine: in a bare Debian bookworm container (the local
# base the Docker smoke makes, nothing on it but Python 3), on a clean copy of the checkout,
#
#   bash scripts/bootstrap demo     (with a small budget)
#   bash scripts/bootstrap test     (the whole suite, `server` tests included)
#
# must both succeed, installing everything else themselves, with no warning in the install
# log. The summary states pytest's counts.
#
#   bash scripts/fresh-machine-check.sh     # as root; after scripts/docker-smoke.sh (same base)
#
# Network: the container uses the host's network (--network host) only to reach Debian's and
# PyPI's package servers through apt and pip; the host's CA bundle is mounted read-only for
# pip, as it is for the image build. pip's downloads are cached in $CACHE/pip between runs.
#
# Namespaces: the `server` tests run their model servers in loopback-only network, PID and
# mount namespaces (unshare, nsenter, setns). The container gets just what that takes,
# never --privileged: SYS_ADMIN (unshare, setns, mounting the namespace's /proc), NET_ADMIN
# (bringing its loopback up), and no seccomp or AppArmor profile (Docker's defaults refuse
# unshare and mount). CI=true makes those tests fail rather than skip if this is not enough.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY_BASE=python:3.11-slim-bookworm
LOCAL_BASE=copycat-tf-base:bookworm
CACHE=${COPYCAT_DOCKER_CACHE:-/var/cache/copycat-tf}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
#: The least the `server` tests' namespaces need (see above).
NAMESPACE_OPTIONS=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
                   --security-opt apparmor=unconfined)

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
docker run --rm --network host "${NAMESPACE_OPTIONS[@]}" "${mounts[@]}" -w /src -e CI=true "$base" bash -c '
    set -euo pipefail
    # The machine as the README assumes it: Debian with Python 3 (no pip, no venv, nothing else).
    if ! command -v python3 >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 ca-certificates >/dev/null
    fi
    echo "fresh-machine: the machine has $(python3 --version); no pip: $(python3 -m pip --version >/dev/null 2>&1 && echo no || echo yes)"
    bash scripts/bootstrap demo --budget 2000 --out /tmp/demo 2>&1 | tee /tmp/demo.log
    test -s /tmp/demo/steal/report/report.json
    if ! grep -q "^next: .venv/bin/copycat-tf --help" /tmp/demo.log; then
        echo "fresh-machine: the demo did not end by saying how to run copycat-tf next" >&2
        exit 1
    fi
    if grep -E "Warning|WARNING" .venv/install.log; then
        echo "fresh-machine: the install printed the warnings above (.venv/install.log)" >&2
        exit 1
    fi
    echo "fresh-machine: ok: bash scripts/bootstrap demo (an install without warnings)"
    tested=0
    bash scripts/bootstrap test -p no:cacheprovider 2>&1 | tee /tmp/test.log || tested=$?
    # The last line of pytest ("650 passed, 2 deselected in 901.5s"), for the summary outside too.
    { grep -E "[0-9]+ (passed|failed|errors?)" /tmp/test.log || echo "no pytest summary (see above)"; } \
        | tail -1 | sed -E "s/^=+ *//; s/ *=+$//" > .fresh-machine-counts
    [ "$tested" -eq 0 ] || { echo "fresh-machine: bash scripts/bootstrap test failed: $(cat .fresh-machine-counts)" >&2; exit 1; }
    echo "fresh-machine: ok: bash scripts/bootstrap test: $(cat .fresh-machine-counts)"
    start=$(date +%s)
    bash scripts/bootstrap demo --budget 2000 --out /tmp/demo >/dev/null
    echo "fresh-machine: ok: a rerun with nothing changed took $(( $(date +%s) - start )) s"
' || fail "the two commands in a fresh container (tests: $(cat "$work/src/.fresh-machine-counts" 2>/dev/null || echo "not run"))"
say "ok: both commands passed in $((SECONDS - start)) s; tests: $(cat "$work/src/.fresh-machine-counts")"

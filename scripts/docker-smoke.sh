#!/usr/bin/env bash
# Build the Docker image and use it as README "Docker" says: offline (--network none), as a
# non-root user, on a read-only model, and twice with one seed to show the runs reproduce.
#
#   bash scripts/docker-smoke.sh        # as root (it may install docker.io and debootstrap)
#
# Leaves the image tagged copycat-tf:latest. Any failure prints one "docker-smoke: FAILED:"
# line and exits non-zero.
#
# Network: a Docker engine this script starts has no bridge and no iptables rules; the
# build uses the host's network only to reach Debian's and PyPI's package servers (through
# apt and pip); every run is --network none. No image is pulled from a registry unless
# COPYCAT_DOCKER_PULL=1: without a local python:3.11-slim-bookworm, the base is a Debian
# bookworm made here with debootstrap from the mirror apt already uses.
#
# Cached between runs, outside the checkout (COPYCAT_DOCKER_CACHE, default
# /var/cache/copycat-tf): the base's root file system as a tarball (remade after 30 days).
# The engine keeps the rest: the base image, the build's layers and its pip download cache
# (a BuildKit cache mount), so a warm run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=copycat-tf:latest
REGISTRY_BASE=python:3.11-slim-bookworm
LOCAL_BASE=copycat-tf-base:bookworm
CACHE=${COPYCAT_DOCKER_CACHE:-/var/cache/copycat-tf}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SEED=7

passed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/copycat-docker-smoke.XXXXXX")

say() { echo "docker-smoke: $*"; }
pass() { passed=$((passed + 1)); say "ok: $*"; }
fail() {
    echo "docker-smoke: FAILED: $*" >&2
    echo "docker-smoke: $passed passed, 1 failed"
    exit 1
}

# The tools, the engine, a BuildKit client and the base image ($base).
# shellcheck source=scripts/docker-setup.sh
source "$(dirname "$0")/docker-setup.sh"

# Build. The host's CA bundle reaches pip as a BuildKit secret: mounted for one RUN, never
# in a layer.
old_image=$(docker image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
secret=()
[ ! -s "$CA_BUNDLE" ] || secret=(--secret "id=pip-ca,src=$CA_BUNDLE")
say "building $IMAGE on $base"
start=$SECONDS
DOCKER_BUILDKIT=1 "$build_client" build --progress=plain --network host "${secret[@]}" \
    --build-arg "BASE=$base" -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; fail "docker build (base $base)"; }
build_seconds=$((SECONDS - start))
new_image=$(docker image inspect "$IMAGE" --format '{{.Id}}')
# The image this build replaced, if nothing else uses it (its layers stay cached).
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
    docker rmi "$old_image" >/dev/null 2>&1 || true
fi
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
pass "built in ${build_seconds} s; image size $((size / 1000000)) MB"

run() { docker run --rm --network none "$@"; }

# The image itself: a non-root default user, and no copy of the build's CA bundle.
uid=$(run --entrypoint id "$IMAGE" -u) || fail "docker run id"
[ "$uid" != 0 ] || fail "the image runs as root by default"
if [ -s "$CA_BUNDLE" ]; then
    ca_sha=$(sha256sum "$CA_BUNDLE" | cut -d' ' -f1)
    copies=$(run --user 0 --entrypoint sh "$IMAGE" -c \
        "find / -xdev -type f -size $(stat -c %s "$CA_BUNDLE")c -exec sha256sum {} + 2>/dev/null" \
        | grep -c "$ca_sha" || true)
    [ "$copies" = 0 ] || fail "the image holds a copy of the build host's $CA_BUNDLE"
fi
pass "runs as uid $uid by default; no copy of the build's CA bundle in the image"

# Runs as the caller, whose files the outputs must be. As root, an unprivileged uid with no
# account in the image stands in for a user.
if [ "$(id -u)" = 0 ]; then caller=4242:4242; else caller="$(id -u):$(id -g)"; fi
folder() { mkdir -p "$1" && chown "$caller" "$1"; }

# 1. The demo, air-gapped: Fashion-MNIST and the photo pool are inside the image.
folder "$work/demo"
start=$SECONDS
run --user "$caller" -v "$work/demo:/runs" "$IMAGE" demo --out /runs/demo \
    --budget 500 --target-epochs 1 --epochs 2 --seed "$SEED" >"$work/demo.out" 2>"$work/demo.err" \
    || { tail -20 "$work/demo.err" >&2; fail "demo in a container with --network none"; }
report=$work/demo/demo/steal/report/report.json
[ -s "$report" ] || fail "demo wrote no $report"
owner=$(stat -c %u:%g "$report")
[ "$owner" = "$caller" ] || fail "report.json belongs to $owner, not the caller $caller"
pass "demo offline in $((SECONDS - start)) s, report.json owned by $owner: $(tail -1 "$work/demo.out")"

# 2. An audit of a model mounted read-only.
mkdir -p "$work/models"
cp "$work/demo/demo/target.onnx" "$work/models/target.onnx"
chmod -R a+rX "$work/models"
model_sha=$(sha256sum "$work/models/target.onnx" | cut -d' ' -f1)
folder "$work/audit"
start=$SECONDS
run --user "$caller" -v "$work/models:/models:ro" -v "$work/audit:/runs" "$IMAGE" \
    audit /models/target.onnx --queries photos --budgets 500,1000 --defences none,top1 \
    --epochs 2 --eval-queries 200 --seed "$SEED" --out /runs/audit >"$work/audit.out" 2>"$work/audit.err" \
    || { tail -20 "$work/audit.err" >&2; fail "audit of a read-only model in a container with --network none"; }
for file in audit.html audit.json audit.md; do
    [ -s "$work/audit/audit/$file" ] || fail "audit wrote no $file"
done
[ "$(ls -A "$work/models")" = target.onnx ] || fail "the audit wrote into the read-only models folder"
[ "$(sha256sum "$work/models/target.onnx" | cut -d' ' -f1)" = "$model_sha" ] || fail "target.onnx changed"
pass "audit of /models/target.onnx (read-only) in $((SECONDS - start)) s: $(tail -1 "$work/audit.out")"

# 3. Reproducibility: one steal, the same seed, two fresh containers.
for name in a b; do
    folder "$work/steal-$name"
    run --user "$caller" -v "$work/models:/models:ro" -v "$work/steal-$name:/runs" "$IMAGE" \
        steal /models/target.onnx --queries photos --budget 500 --epochs 2 \
        --test-data fashion-mnist:test --seed "$SEED" --deterministic --out /runs/steal \
        >"$work/steal-$name.out" 2>"$work/steal-$name.err" \
        || { tail -20 "$work/steal-$name.err" >&2; fail "steal $name in a container with --network none"; }
done
say "sha256 of the fake-dataset shards, first run then second:"
(cd "$work/steal-a/steal" && sha256sum fakeset/shard-*.npz) >"$work/shards-a.sha256" || fail "steal a wrote no shards"
(cd "$work/steal-b/steal" && sha256sum fakeset/shard-*.npz) >"$work/shards-b.sha256" || fail "steal b wrote no shards"
sed 's/^/    a /' "$work/shards-a.sha256"
sed 's/^/    b /' "$work/shards-b.sha256"
cmp -s "$work/shards-a.sha256" "$work/shards-b.sha256" \
    || fail "the two steals with --seed $SEED --deterministic wrote different shards (sha256 above)"
# The copycats: the same answers, to the bit, on the 10,000 test images, and the same report.
# copycat.onnx is not compared byte for byte: tf2onnx names a constant it merges after
# whichever twin it meets first, which varies between processes (same values, same graph),
# and report.json holds that file's sha256, so that one field is left out.
run --user "$caller" -v "$work/steal-a/steal:/a:ro" -v "$work/steal-b/steal:/b:ro" -i \
    --entrypoint python "$IMAGE" - >"$work/compare.out" 2>"$work/compare.err" <<'EOF' \
    || { cat "$work/compare.out" "$work/compare.err" >&2; fail "the two steals' copycats or reports differ"; }
import hashlib, json, sys
from copycat_tf.datasets import load_labelled
from copycat_tf.oracle import OnnxOracle

test = load_labelled("fashion-mnist:test")
digests, reports = [], []
for run in ("/a", "/b"):
    answers = OnnxOracle(f"{run}/copycat/copycat.onnx").query(test.images, soft=True)
    digests.append(hashlib.sha256(answers.labels.tobytes() + answers.probabilities.tobytes()).hexdigest())
    with open(f"{run}/report/report.json") as handle:
        report = json.load(handle)
    report["copycat"].pop("sha256")
    reports.append(report)
print(f"copycat answers (labels and probabilities) on {len(test.images):,} test images, sha256:")
print(f"  a {digests[0]}\n  b {digests[1]}")
for name, a, b in [("accuracy", reports[0]["copycat"]["accuracy"], reports[1]["copycat"]["accuracy"]),
                   ("agreement", reports[0]["agreement"], reports[1]["agreement"]),
                   ("performance ratio", reports[0]["performance_ratio"], reports[1]["performance_ratio"])]:
    print(f"report {name}: a {a!r}, b {b!r}")
print("report.json, all else:", "identical" if reports[0] == reports[1] else "DIFFERENT")
sys.exit(digests[0] != digests[1] or reports[0] != reports[1])
EOF
sed 's/^/    /' "$work/compare.out"
shards=$(wc -l <"$work/shards-a.sha256")
pass "two steals, --seed $SEED --deterministic, fresh containers: $shards shards byte-identical, same copycat answers, same report"

say "$passed passed, 0 failed"

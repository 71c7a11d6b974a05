# Shared by scripts/docker-smoke.sh and scripts/fresh-machine-check.sh (sourced, not run):
# installs docker.io and debootstrap when missing, starts a Docker engine without bridge or
# iptables when none answers (the caller's EXIT trap stops it: $started_dockerd), finds a
# client that builds with BuildKit ($build_client), and sets $base: the registry's
# python:3.11-slim-bookworm when present, else a Debian bookworm made here with debootstrap
# from the mirror apt already uses (its tarball cached in $CACHE).
#
# The caller defines: say, fail, $work (a scratch folder), $CACHE, $REGISTRY_BASE, $LOCAL_BASE.
# It sets its EXIT trap to call docker_cleanup (stops only what was started here, removes
# $work).

started_dockerd=
made_policy=

docker_cleanup() {
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        # dockerd stops the containerd it started, then exits.
        for _ in $(seq 60); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
    fi
    [ -z "$made_policy" ] || rm -f "$made_policy"
    rm -rf "$work"
}
trap docker_cleanup EXIT

# Tools: Debian's docker.io (dockerd, and a docker client with BuildKit built in) and debootstrap.
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing docker.io and debootstrap"
    # Keep the package's init script from starting a default engine (bridge, iptables).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        made_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$made_policy" && chmod +x "$made_policy"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap \
        >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; fail "apt-get install docker.io debootstrap"; }
fi

# The engine: use a running one, else start one without a bridge, stopped on exit.
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (no bridge, no iptables)"
    dockerd --bridge=none --iptables=false >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$started_dockerd" 2>/dev/null || { tail -20 "$work/dockerd.log" >&2; fail "dockerd exited"; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; fail "dockerd did not answer within 60 s"; }
fi

# A client that builds with BuildKit (secret and cache mounts): any client with the buildx
# plugin, or one older than 23.0, whose BuildKit is built in (Debian bookworm's is 20.10).
build_client=
for client in $(type -ap docker) /usr/bin/docker; do
    [ -x "$client" ] || continue
    if "$client" buildx version >/dev/null 2>&1; then build_client=$client; break; fi
    major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || true
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then build_client=$client; break; fi
done
[ -n "$build_client" ] || fail "no docker client builds with BuildKit: install docker-buildx, or Debian's docker.io"

# The URI of apt's own source for a suite (deb822 .sources or one-line .list files).
apt_uri() {
    python3 - "$1" <<'EOF'
import glob, re, sys
suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        if (fields.get("Enabled", "yes") != "no" and "deb" in fields.get("Types", "").split()
                and suite in fields.get("Suites", "").split()):
            print(fields["URIs"].split()[0]); sys.exit()
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            print(words[1]); sys.exit()
EOF
}

# The base image.
if [ -n "${COPYCAT_DOCKER_BASE:-}" ]; then
    base=$COPYCAT_DOCKER_BASE
elif docker image inspect "$REGISTRY_BASE" >/dev/null 2>&1 \
        || { [ "${COPYCAT_DOCKER_PULL:-0}" = 1 ] && docker pull -q "$REGISTRY_BASE" >/dev/null; }; then
    base=$REGISTRY_BASE
else
    base=$LOCAL_BASE
    tarball=$CACHE/debian-bookworm-minbase.tar
    mkdir -p "$CACHE"
    if [ ! -s "$tarball" ] || [ -n "$(find "$tarball" -mtime +30)" ]; then
        mirror=${COPYCAT_DEBIAN_MIRROR:-$(apt_uri bookworm)}
        [ -n "$mirror" ] || fail "no Debian bookworm mirror in apt's sources; set COPYCAT_DEBIAN_MIRROR=URI"
        security=$(apt_uri bookworm-security)
        say "making a Debian bookworm base with debootstrap from $mirror"
        rootfs=$work/rootfs
        start=$SECONDS
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
            || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap bookworm from $mirror"; }
        {
            echo "deb $mirror bookworm main"
            echo "deb $mirror bookworm-updates main"
            [ -z "$security" ] || echo "deb $security bookworm-security main"
        } > "$rootfs/etc/apt/sources.list"
        chroot "$rootfs" apt-get clean
        rm -rf "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
        say "base made in $((SECONDS - start)) s"
    fi
    # Re-import only when the tarball changed: a new base image id would void the layer cache.
    tar_id=$(sha256sum "$tarball" | cut -c1-16)
    have_id=$(docker image inspect "$LOCAL_BASE" \
        --format '{{index .Config.Labels "org.copycat-tf.rootfs"}}' 2>/dev/null || true)
    if [ "$have_id" != "$tar_id" ]; then
        docker import --change "LABEL org.copycat-tf.rootfs=$tar_id" "$tarball" "$LOCAL_BASE" >/dev/null \
            || fail "docker import $tarball"
    fi
fi


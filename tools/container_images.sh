#!/usr/bin/env bash
# Makes a machine without Docker and without access to an image registry able to build and run
# sfsync's containers: installs Debian's podman (with runc, CNI networking and its DNS plugin),
# mmdebstrap and redis' stand-in, writes the podman settings such a host needs, and builds the two
# base images deploy/Dockerfile and docker-compose.yml start from, out of Debian packages:
#   localhost/sfsync-base/python:3.11-bookworm   Debian's python3 (3.11), for PYTHON_IMAGE
#   localhost/sfsync-base/redis:7-bookworm       Debian's redis-server (7.0), for SFSYNC_REDIS_IMAGE
# Idempotent and cached: an image is built once and rebuilt only when its recipe below changes.
# Prints what callers need, one KEY=VALUE a line: CONTAINERS_CONF, PYTHON_IMAGE, REDIS_IMAGE.
# Needs root (apt-get, mmdebstrap, rootful podman). Progress goes to stderr.
set -euo pipefail

SUITE=bookworm
PYTHON_IMAGE=localhost/sfsync-base/python:3.11-$SUITE
REDIS_IMAGE=localhost/sfsync-base/redis:7-$SUITE
STATE_DIR=${SFSYNC_CONTAINERS_DIR:-/var/tmp/sfsync-containers}
PACKAGES=(podman runc containernetworking-plugins golang-github-containernetworking-plugin-dnsname
          mmdebstrap uidmap)

say() { echo "container_images: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "needs root: it installs Debian packages and builds images with rootful podman"
    exit 1
fi
mkdir -p "$STATE_DIR"
# one build at a time on this machine: two test sessions may start together
exec 9>"$STATE_DIR/lock"
flock -w 1800 9

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || { say "missing ${missing[*]} and this system has no apt-get"; exit 1; }
    say "installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"; } >"$STATE_DIR/apt.log" 2>&1 || { tail -20 "$STATE_DIR/apt.log" >&2; exit 1; }
fi

# The default runtime (crun) refuses hosts whose cgroups run in hybrid mode, and a container may not
# raise its open-files limit above the caller's hard limit; runc with cgroupfs and explicit limits work.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 65536 ] && nofile=65536
# the process limit the same (a higher one was refused on the CI machine although below its hard limit)
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt "$nofile" ] && nproc=$nofile
CONF="$STATE_DIR/containers.conf"
cat >"$CONF.new" <<CONF
# written by sfsync's tools/container_images.sh; read through CONTAINERS_CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
mv "$CONF.new" "$CONF"
export CONTAINERS_CONF="$CONF"

# --- the base images: a minimal Debian root filesystem, imported -------------------------
recipe_label() { printf '%s' "$*" | sha256sum | cut -c1-16; }

build_base() {  # NAME RECIPE-ID MMDEBSTRAP-ARGS... -- IMPORT-CHANGES...
    local name=$1 recipe=$2; shift 2
    local args=() changes=()
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    shift
    changes=("$@")
    if [ "$(podman image inspect --format '{{ index .Config.Labels "sfsync.base.recipe" }}' "$name" 2>/dev/null)" \
            = "$recipe" ]; then
        return 0
    fi
    say "building $name from Debian $SUITE packages (once; later runs reuse it)"
    local tarball="$STATE_DIR/rootfs-$recipe.tar"
    mmdebstrap --variant=minbase --quiet "${args[@]}" "$SUITE" "$tarball" >"$STATE_DIR/mmdebstrap.log" 2>&1 \
        || { tail -20 "$STATE_DIR/mmdebstrap.log" >&2; rm -f "$tarball"; exit 1; }
    local import=(--change "LABEL sfsync.base.recipe=$recipe")
    for change in "${changes[@]}"; do import+=(--change "$change"); done
    local previous
    previous=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
    podman import --quiet "${import[@]}" "$tarball" "$name" >/dev/null
    rm -f "$tarball"
    # the image of the former recipe, unless a container still uses it
    [ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
}

# what the official python:3.11-slim image offers the Dockerfile: `python` on PATH, venv, TLS roots,
# useradd; documentation and caches left out
PYTHON_ARGS=(--include=python3,python3-venv,ca-certificates,passwd
             --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/*
             --dpkgopt=path-exclude=/usr/share/locale/*
             '--customize-hook=ln -sf /usr/bin/python3 "$1/usr/local/bin/python"')
PYTHON_CHANGES=('ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV LANG=C.UTF-8'
                'CMD ["python3"]')
build_base "$PYTHON_IMAGE" "$(recipe_label "${PYTHON_ARGS[@]}" "${PYTHON_CHANGES[@]}")" \
    "${PYTHON_ARGS[@]}" -- "${PYTHON_CHANGES[@]}"

# what docker-compose.yml asks of redis:7-alpine: redis-server and redis-cli on PATH, /data, user redis,
# and the official image's protected mode off (it is built so: other containers of the network connect)
cat >"$STATE_DIR/redis-entrypoint" <<'ENTRYPOINT'
#!/bin/sh
# the official redis image's behaviour: redis-server without protected mode (a container's network)
if [ "${1:-}" = redis-server ]; then
    shift
    exec redis-server "$@" --protected-mode no
fi
exec "$@"
ENTRYPOINT
REDIS_ARGS=(--include=redis-server
            --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/*
            "--customize-hook=copy-in $STATE_DIR/redis-entrypoint /usr/local/bin"
            '--customize-hook=chmod 0755 "$1/usr/local/bin/redis-entrypoint"'
            '--customize-hook=mkdir -p "$1/data" && chroot "$1" chown redis:redis /data')
REDIS_CHANGES=('ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' 'WORKDIR /data'
               'USER redis' 'EXPOSE 6379' 'ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]'
               'CMD ["redis-server"]')
build_base "$REDIS_IMAGE" "$(recipe_label "${REDIS_ARGS[@]}" "${REDIS_CHANGES[@]}" "$(cat "$STATE_DIR/redis-entrypoint")")" \
    "${REDIS_ARGS[@]}" -- "${REDIS_CHANGES[@]}"

echo "CONTAINERS_CONF=$CONF"
echo "PYTHON_IMAGE=$PYTHON_IMAGE"
echo "REDIS_IMAGE=$REDIS_IMAGE"

#!/bin/bash
# Build the factory's images on a machine that reaches package registries but no image registry:
#   1. a Python 3.11 base image made from Debian's packages (mmdebstrap; /opt/python is a venv on PATH,
#      so `python` and `pip` behave as in python:3.11-slim),
#   2. docker/Dockerfile.cpu and docker/Dockerfile.gpu (CUDA=0: its Python layer) on that base,
#   3. PostgreSQL from Debian's package (docker/postgres), for the chart's bundled database,
# tagged with the chart's image names, and saved as archives for `ctr images import`.
#
#   bash docker/build-local.sh [CACHE]      # root; podman, buildah and mmdebstrap from Debian
#   IMAGES="cpu" bash docker/build-local.sh # only some of: base cpu gpu postgres
#
# torch's wheel is the one this machine's pip picks for torch==TORCH_VERSION (the CPU build where its
# index offers one), downloaded once into CACHE/wheels and read by the builds through PIP_FIND_LINKS.
# Prints each image's build time and size, then CACHE/images (one .tar per image). CACHE defaults to
# ~/.cache/factory-images; the base rootfs is built once and kept there.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
C=$(realpath -m "${1:-${FACTORY_IMAGES_CACHE:-$HOME/.cache/factory-images}}")
IMAGES=${IMAGES:-base cpu gpu postgres}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml")
TORCH_VERSION=$(sed -n 's/^torch==//p' "$REPO/constraints.txt")
SUITE=bookworm
BASE=localhost/factory-base:$SUITE-py3.11
CPU=docker.io/nemotron-factory/factory-cpu:$VERSION
GPU=docker.io/nemotron-factory/factory-gpu:$VERSION
PG=docker.io/nemotron-factory/postgres-debian:15
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
for tool in podman mmdebstrap; do
  command -v $tool >/dev/null || { echo "$tool is not installed (apt-get install podman buildah mmdebstrap)" >&2; exit 1; }
done
mkdir -p "$C/images" "$C/wheels"

report() {  # NAME IMAGE START: one line with the build time and the image's size
  local size; size=$(podman image inspect --format '{{.Size}}' "$2")
  printf 'image %-9s %-52s built in %4d s, %6d MiB\n' "$1" "$2" $(( $(date +%s) - $3 )) $(( size / 1048576 ))
}
save() {  # IMAGE FILE: a docker-archive keeps the tag, which `ctr images import` takes as the image's name
  rm -f "$2.partial" && podman save --format docker-archive -o "$2.partial" "$1" >/dev/null && mv "$2.partial" "$2"
}
want() { [[ " $IMAGES " == *" $1 "* ]]; }

if want base; then
  start=$(date +%s)
  if [ ! -s "$C/rootfs-$SUITE.tar" ]; then
    # minbase + Python 3.11 with venv support, apt (the Dockerfiles install lynx) and passwd (useradd).
    mmdebstrap --quiet --variant=minbase --include=python3.11,python3.11-venv,ca-certificates,passwd \
      --customize-hook='chroot "$1" python3.11 -m venv /opt/python' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
      "$SUITE" "$C/rootfs-$SUITE.partial.tar"
    mv "$C/rootfs-$SUITE.partial.tar" "$C/rootfs-$SUITE.tar"
  fi
  podman import --quiet \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$C/rootfs-$SUITE.tar" "$BASE" >/dev/null
  report base "$BASE" "$start"
fi

build() {  # NAME IMAGE DOCKERFILE CONTEXT [BUILD ARGS...]
  local name=$1 image=$2 file=$3 context=$4; shift 4
  local start; start=$(date +%s)
  # The tests that run an image skip it when it was built from other code than theirs (docker/source-digest.py).
  local digest; digest=$("$PYTHON" "$REPO/docker/source-digest.py" "$file" "$context")
  podman build --quiet --network host --layers --build-arg BASE_IMAGE="$BASE" --label "factory.source-digest=$digest" \
    "$@" -f "$file" -t "$image" "$context" >/dev/null
  report "$name" "$image" "$start"
  save "$image" "$C/images/$name.tar"
}

if want cpu || want gpu; then
  ls "$C/wheels"/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1 \
    || "$PYTHON" -m pip download --quiet --no-deps --dest "$C/wheels" "torch==$TORCH_VERSION"
  wheels=(--volume "$C/wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels
          --build-arg BUILD_PACKAGES="gcc libc6-dev libpython3.11-dev")
  # Where this machine's pip trusts an extra CA (PIP_CERT: a TLS-inspecting proxy in front of the index),
  # the builds' pip trusts the same bundle, mounted for the build only and never part of an image.
  if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    printf '[global]\ncert = /run/pip-build/ca.crt\n' > "$C/pip-build.conf"
    wheels+=(--volume "$(realpath "$PIP_CERT"):/run/pip-build/ca.crt:ro" --volume "$C/pip-build.conf:/etc/pip.conf:ro")
  fi
  want cpu && build cpu "$CPU" "$REPO/docker/Dockerfile.cpu" "$REPO" "${wheels[@]}"
  want gpu && build gpu "$GPU" "$REPO/docker/Dockerfile.gpu" "$REPO" "${wheels[@]}" --build-arg CUDA=0
fi
want postgres && build postgres "$PG" "$REPO/docker/postgres/Dockerfile" "$REPO/docker/postgres"
echo "$C/images"

#!/bin/sh
# Build the agentloop images with podman: `make images` runs this.
#
#   deploy/images/build.sh [app] [runner]        (both when none is named)
#
# 1. the base (BASE): by default localhost/agentloop-base:bookworm, made with
#    debootstrap-base.sh from a Debian mirror when it is not there yet (no image
#    registry needed); any Debian bookworm image will do (BASE=docker.io/library/debian:bookworm-slim);
# 2. the wheelhouse var/images/wheels/ (wheelhouse.py): pyproject.toml's dependencies
#    as wheels for the images' Python, so the builds need no package index;
# 3. localhost/agentloop-app:TAG and localhost/agentloop-runner:TAG.
#
# PODMAN_RUNTIME (runc) and the explicit nofile/nproc limits are what podman
# needs on machines whose cgroup setup crun cannot use; both are overridable.
set -eu
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
BASE=${BASE:-localhost/agentloop-base:bookworm}
TAG=${TAG:-dev}
PODMAN="podman --runtime ${PODMAN_RUNTIME:-runc}"
LIMITS="--ulimit nofile=${NOFILE:-4096}:${NOFILE:-4096} --ulimit nproc=${NPROC:-4096}:${NPROC:-4096}"
IMAGES=${*:-app runner}

# podman, runc and debootstrap from Debian's packages when they are missing (root).
missing=""
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build.sh: install$missing (Debian packages) first" >&2
    exit 1
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

if [ "$BASE" = localhost/agentloop-base:bookworm ] && ! $PODMAN image exists "$BASE"; then
  deploy/images/debootstrap-base.sh "$BASE" >/dev/null
fi

"$PYTHON" deploy/images/wheelhouse.py --python-version "${IMAGE_PYTHON:-3.11.2}"

for image in $IMAGES; do
  # --network host: the image's apt reaches the mirror the way this machine does.
  $PODMAN build $LIMITS --network host --build-arg "BASE=$BASE" \
    -f "deploy/images/$image.Dockerfile" -t "localhost/agentloop-$image:$TAG" .
done
$PODMAN images --filter 'reference=localhost/agentloop-*'

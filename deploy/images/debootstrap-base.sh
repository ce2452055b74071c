#!/bin/sh
# Make a Debian base image from nothing but a Debian mirror, for machines that
# reach no image registry: debootstrap a minimal root file system, slim it the
# way debian:*-slim is slimmed (no docs, man pages or locales, now or in later
# installs), and import it into podman as TAG.
#
#   deploy/images/debootstrap-base.sh [TAG]      (root; needs debootstrap, podman)
#
# SUITE (bookworm) and MIRROR (the first Debian URI of apt's own sources, else
# http://deb.debian.org/debian) can be overridden from the environment.
set -eu

SUITE=${SUITE:-bookworm}
TAG=${1:-localhost/agentloop-base:$SUITE}
PODMAN=${PODMAN:-podman --runtime runc}

apt_mirror() {
  # deb822 (/etc/apt/sources.list.d/*.sources) first, then one-line sources.list.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && awk '/^deb / && $0 !~ /security/ {print ($2 ~ /^\[/ ? $3 : $2); exit}' "$f"
  done
}
MIRROR=${MIRROR:-$(apt_mirror | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-$(printf %s "$MIRROR" | sed 's#/debian/*$#/debian-security#')}

ROOTFS=$(mktemp -d /tmp/agentloop-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "debootstrap $SUITE from $MIRROR into $ROOTFS" >&2
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" >&2

# What the image's apt installs from later: the release, its updates and security.
rm -f "$ROOTFS/etc/apt/sources.list"
cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# As in Debian's slim images: later package installs skip docs too, apt keeps no debs.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
SLIM
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$ROOTFS/etc/apt/apt.conf.d/99slim"
printf 'Binary::apt::APT::Keep-Downloaded-Packages "false";\n' \
  >"$ROOTFS/etc/apt/apt.conf.d/99no-cache"
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache

tar --numeric-owner -C "$ROOTFS" -c . |
  $PODMAN import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$TAG" >&2
echo "$TAG"

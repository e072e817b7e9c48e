#!/usr/bin/env bash
# Makes the image's base from Debian packages, for machines with no registry to pull
# python:3.11-slim from: a bookworm minbase rootfs with python3.11 (and venv, for the
# Dockerfile's builder stage) made by mmdebstrap, imported into podman as BASE_IMAGE.
# Needs root and the Debian packages mmdebstrap and podman; network to deb.debian.org.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-localhost/zeta-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
OUT=${OUT:-build/image}

if [[ ${1:-} != --force ]] && podman image exists "$BASE_IMAGE"; then
  echo "base: $BASE_IMAGE exists (--force to remake it)"
  exit 0
fi
mkdir -p "$OUT"
rootfs="$OUT/base-rootfs.tar"
t0=$(date +%s)
# Documentation, man pages and translations are a fifth of a minbase with Python and are
# never read in a container; the copyright files stay, as Debian's licences ask.
mmdebstrap -q --variant=minbase \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  "$SUITE" "$rootfs" "$MIRROR"
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$rootfs" "$BASE_IMAGE" >/dev/null
rm -f "$rootfs"
echo "base: $BASE_IMAGE from Debian $SUITE in $(( $(date +%s) - t0 )) s," \
  "$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec) uncompressed"

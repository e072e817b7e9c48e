#!/usr/bin/env bash
# `make image`: the Dockerfile built with podman on this machine, on a base made from
# Debian packages (no registry here), saved as an OCI archive that `podman load`,
# `ctr images import` or `skopeo copy oci-archive:...` take.
# Needs root; installs podman, buildah, runc and mmdebstrap from Debian when missing;
# network to PyPI and deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/zeta-router/Chart.yaml)}
IMAGE=${IMAGE:-localhost/zeta-router:$VERSION}
BASE_IMAGE=${BASE_IMAGE:-localhost/zeta-base:bookworm}
OUT=${OUT:-build/image}
# A CA bundle for PyPI behind a TLS-inspecting proxy (this VM has one); pip's own
# certificates are used when the file is absent.
PIP_CA=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
# crun cannot run on this VM's hybrid cgroups; without the ulimits runc cannot set the
# rlimits (root here lacks CAP_SYS_RESOURCE): see README, "The container image".
RUNTIME_FLAGS=(--runtime "${OCI_RUNTIME:-/usr/sbin/runc}"
               --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# A fresh machine (CI) has none of the tools: install the missing ones from Debian.
missing=()
for pair in podman:podman buildah:buildah mmdebstrap:mmdebstrap runc:runc newuidmap:uidmap; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

# podman 4.3 fails on a .dockerignore entry that does not exist ("lstat build"), as
# in a fresh clone: the output folder is made first.
mkdir -p "$OUT"
BASE_IMAGE=$BASE_IMAGE OUT=$OUT images/debian-base.sh
secret=()
[[ -s $PIP_CA ]] && secret=(--secret "id=pip-ca,src=$PIP_CA")
t0=$(date +%s)
podman build --quiet --format oci "${RUNTIME_FLAGS[@]}" "${secret[@]}" \
  --build-arg "BASE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
  --tag "$IMAGE" . >/dev/null
t1=$(date +%s)
archive="$OUT/zeta-router-$VERSION.oci.tar"
rm -f "$archive"
podman save --quiet --format oci-archive --output "$archive" "$IMAGE"
echo "image: $IMAGE built in $((t1 - t0)) s," \
  "$(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) uncompressed;" \
  "$archive $(du -h "$archive" | cut -f1)"

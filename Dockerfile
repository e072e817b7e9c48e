# syntax=docker/dockerfile:1
# The one Zeta Router image: `zeta-operator` and `zeta-sidecar` are both on PATH and the
# chart picks one with `command:`. The builder stage turns the project and its PyPI
# dependencies into wheels (the sidecar's hot modules compiled by mypyc, so it has a C
# compiler) and installs them into a venv; the runtime stage is the bare base plus that
# venv (no compiler, no pip), run as a numeric non-root user, and needs no writable path
# outside /tmp, so a read-only root filesystem works.
#
# Elsewhere:  docker build -t REGISTRY/zeta-router:TAG .
# Here:       make image  (builds BASE from Debian packages: images/debian-base.sh)

# Any Debian-like image with python3.11 and its venv module; the testbed's comes from
# mmdebstrap (localhost/zeta-base:bookworm).
ARG BASE=docker.io/library/python:3.11-slim

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# mypyc's C needs gcc and Python's headers: python:3.11-slim has the headers, Debian's
# python3 (the testbed's base) needs python3-dev for them.
RUN pkgs="gcc libc6-dev" \
 && python3 -c 'import pathlib, sys, sysconfig; sys.exit(not pathlib.Path(sysconfig.get_paths()["include"], "Python.h").is_file())' \
    || pkgs="$pkgs python3-dev" \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null \
 && rm -rf /var/lib/apt/lists/*
# The dependencies' wheels first, from pyproject.toml alone, so that a change to the
# sources reuses this layer instead of downloading everything again.
WORKDIR /src
COPY pyproject.toml ./
# An optional `pip-ca` build secret is a CA bundle for PyPI behind a TLS-inspecting proxy
# (`--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt`); the image never keeps it.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv /opt/build \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/build/bin/pip wheel --wheel-dir /wheels --requirement requirements.txt
COPY README.md LICENSE setup.py ./
COPY api api
COPY operator operator
COPY sidecar sidecar
COPY testbed/zeta_testbed testbed/zeta_testbed
# The project's own wheel needs setuptools and mypy (build isolation; the libraries mypyc
# reads types from come from /wheels), so the secret again; then the runtime venv gets
# the wheels only (--no-index), without pip or setuptools in it. The image must carry
# the compiled form: a build that fell back to pure Python fails here.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/build/bin/pip wheel --no-deps --find-links /wheels --wheel-dir /wheels /src \
 && python3 -m venv --without-pip /opt/zeta \
 && /opt/build/bin/pip --python /opt/zeta/bin/python install --no-index --find-links /wheels zeta-router \
 && /opt/zeta/bin/python -c "import zeta_operator.cli, zeta_sidecar.cli" \
 && /opt/zeta/bin/zeta-sidecar --version | tee /dev/stderr | grep -q "compiled (mypyc)"

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="zeta-router" \
      org.opencontainers.image.description="Zeta Router: zeta-operator and zeta-sidecar" \
      org.opencontainers.image.source="https://github.com/zeta-router/zeta-router" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /opt/zeta /opt/zeta
# Bytecode was compiled at install time; a read-only root could not take more. HOME is
# /tmp because a numeric user has no home, and /tmp is the one writable mount (an
# emptyDir in the chart, a tmpfs with `podman run --read-only`).
ENV PATH=/opt/zeta/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
CMD ["zeta-sidecar", "--help"]

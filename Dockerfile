# agent-notify's image: `docker compose up` (docker-compose.yml) or
#   docker build -t agent-notify . && docker run -e DATABASE_URL=postgresql://… -p 8080:8080 agent-notify
# The base image is a build argument; any image with Python 3.11+ whose `python -m venv` works
# will do (scripts/compose-smoke.sh builds with a local stand-in where no registry is reachable).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned runtime dependencies, and the app installed editable
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /app
# Dependencies first, in their own layer: rebuilt only when pyproject.toml or the lock changes.
# The lock also pins the dev tools, so the runtime list comes from pyproject.toml and the lock
# only constrains it.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/runtime.txt \
    && /opt/venv/bin/pip install -c requirements.lock -r /tmp/runtime.txt
# The source stays in /app and is installed editable: the app finds migrations/ beside app/.
COPY README.md alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
RUN /opt/venv/bin/pip install --no-deps -e . \
    && python -m compileall -q app migrations

# --- runtime: the same base, the virtualenv and the source, a non-root user
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 agent-notify \
    && useradd --system --uid 10001 --gid agent-notify --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin agent-notify \
    && mkdir /data && chown agent-notify:agent-notify /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# HOST: reachable from outside the container. DATA_DIR: writable, for the outbox (no SMTP_HOST)
# and the embedded Postgres (no DATABASE_URL), which suit a quick `docker run` only.
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

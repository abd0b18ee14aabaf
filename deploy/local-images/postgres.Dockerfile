# Local stand-in for the official postgres image, for the compose smoke on a machine that cannot
# reach an image registry (scripts/compose-smoke.sh): Debian bookworm's PostgreSQL 15, with an
# entrypoint that honours the same variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# PGDATA, PGPORT) and the same data directory, and pg_isready on the PATH.
ARG BASE=agent-notify-local/debian:bookworm
FROM ${BASE}
# No cluster from the package's post-install: the entrypoint makes one in PGDATA on first start.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]

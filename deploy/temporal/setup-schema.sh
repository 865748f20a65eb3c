#!/bin/sh
# One-shot (temporalio/admin-tools): create or upgrade Temporal's schemas on PostgreSQL. Safe to repeat.
set -eu
SQL="temporal-sql-tool --plugin postgres12 --ep ${POSTGRES_SEEDS} -p ${DB_PORT} -u ${POSTGRES_USER} --pw ${POSTGRES_PWD}"
SCHEMA=/etc/temporal/schema/postgresql/v12

$SQL --db temporal setup-schema -v 0.0
$SQL --db temporal update-schema -d "$SCHEMA/temporal/versioned"
$SQL --db temporal_visibility setup-schema -v 0.0
$SQL --db temporal_visibility update-schema -d "$SCHEMA/visibility/versioned"
echo "temporal schemas are up to date"

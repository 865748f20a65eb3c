#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# Separate databases: Temporal's persistence and visibility stores, and the application's own.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE USER temporal WITH PASSWORD '${TEMPORAL_DB_PASSWORD}';
ALTER USER temporal CREATEDB;
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE USER enrollments WITH PASSWORD '${ENROLLMENTS_DB_PASSWORD}';
CREATE DATABASE enrollments OWNER enrollments;
SQL

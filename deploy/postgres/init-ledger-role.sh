#!/bin/sh
# Run once by the postgres image on an empty data volume, after the databases exist: the login
# role the ledger service runs as. It owns nothing; ledger's migration (run as the owner, with
# LEDGER_APP_ROLE=krika_ledger_app) makes it a member of krika_ledger_writer, which may read and
# insert journal entries and postings but never update or delete them. On an existing volume run
# the same two statements by hand (docker exec ... psql -U krika -d krika).
set -eu
password=$(cat /run/secrets/ledger_app_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE krika_ledger_app LOGIN PASSWORD '${password}';
CREATE ROLE krika_ledger_writer NOLOGIN;
SQL

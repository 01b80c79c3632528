-- Run once by the postgres image on an empty data volume: one database per service
-- (ARCHITECTURE.md §2). The planned services' databases are created up front so adding a
-- service needs no manual step; on an existing volume create a new one with
--   docker exec -it $(docker ps -qf name=krika_postgres) createdb -U krika krika_<service>
CREATE DATABASE krika_identity;
CREATE DATABASE krika_catalog;
CREATE DATABASE krika_orders;
CREATE DATABASE krika_payments;
CREATE DATABASE krika_ledger;
CREATE DATABASE krika_notify;

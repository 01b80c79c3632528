"""Krika's one-command developer run (`make up`) and the infrastructure check CI shares.

    python scripts/dev.py up            every service, worker and the gateway, until Ctrl-C
    python scripts/dev.py ensure-infra  PostgreSQL, Redis and RabbitMQ answer (started if local)
    python scripts/dev.py migrate       infra, dev secrets, databases and migrations, then exit

`up` checks the backing servers (and starts a stopped local one), starts the Mongo-wire server
`nx-27017` when MONGODB_URL is unset and the development mail catcher (SMTP 127.0.0.1:1025, web
UI http://127.0.0.1:1080) when SMTP_URL is unset, generates development secrets once into
`.local/`, creates the `krika_<service>` databases, runs every service's migrations, then runs
every process with its output prefixed by its name. Ctrl-C or SIGTERM stops them all and exits
0; a process that dies on its own stops everything and exits 1.

Services are discovered, not listed: `services/<name>/pyproject.toml` makes a service,
`services/<name>/alembic.ini` gives it migrations, `services/<name>/src/<name>/worker.py` a
worker. The only table to edit when a service is added is PORTS. It and the other tables a new
service may edit (SIDECARS, DEV_SECRETS, GATEWAY_OPS_PORT) are in scripts/krika_dev/plan.py.

Every value computed here is a default: a variable already set in the environment wins.

This file is the entry point; the launcher is the package next to it, scripts/krika_dev/:
plan (the tables, the apps, the environment), console (output), backing (the servers),
provision (secrets, databases), processes (the supervisor, Ctrl-C), commands (up, migrate,
ensure-infra, the command line) and mailcatcher (the development SMTP server with a web UI).
"""

from __future__ import annotations

import sys

from krika_dev.commands import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n")[0]))

"""The `make up` launcher behind scripts/dev.py, one module per concern.

plan        what runs: PORTS, SIDECARS, DEV_SECRETS and GATEWAY_OPS_PORT (the tables a new service
            edits), the apps discovered under services/, the environment every process gets
console     the prefixed, coloured output; JSON log lines made readable
backing     PostgreSQL, Redis and RabbitMQ: checked, and a stopped local one started
provision   the development secrets in .local/ and the krika_<service> databases
processes   the supervisor of the children; Ctrl-C and SIGTERM
commands    `up`, `migrate` and `ensure-infra`, and the command line
mailcatcher the development mail catcher (SMTP + web UI) notify is pointed at
"""

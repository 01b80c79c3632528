#!/usr/bin/env bash
# Create the Swarm secrets docker-stack.yml expects, with fresh random values. Run once per
# swarm on a manager node; a secret that already exists is left as it is (rotate a secret by
# creating a new one under another name and pointing the stack at it).
# Needs: docker (a swarm manager), openssl.
set -euo pipefail

exists() { docker secret inspect "$1" >/dev/null 2>&1; }

create() { # name, value on stdin
    if exists "$1"; then
        echo "secret $1: exists, kept"
        cat >/dev/null
    else
        docker secret create "$1" - >/dev/null
        echo "secret $1: created"
    fi
}

# The PostgreSQL and RabbitMQ passwords appear in more than one secret; generating them only
# when none of those exist keeps the set consistent.
if exists postgres_password || exists identity_database_url; then
    if ! (exists postgres_password && exists identity_database_url); then
        echo "postgres_password and identity_database_url must be created together;" \
             "remove the one that exists or create the other by hand" >&2
        exit 1
    fi
    echo "secrets postgres_password, identity_database_url: exist, kept"
else
    pg_password=$(openssl rand -hex 24)
    printf '%s' "$pg_password" | create postgres_password
    printf 'postgresql+asyncpg://krika:%s@postgres:5432/krika_identity' "$pg_password" \
        | create identity_database_url
fi

if exists amqp_url || exists rabbitmq_conf; then
    if ! (exists amqp_url && exists rabbitmq_conf); then
        echo "amqp_url and rabbitmq_conf must be created together;" \
             "remove the one that exists or create the other by hand" >&2
        exit 1
    fi
    echo "secrets amqp_url, rabbitmq_conf: exist, kept"
else
    mq_password=$(openssl rand -hex 24)
    printf 'amqp://krika:%s@rabbitmq:5672/' "$mq_password" | create amqp_url
    printf 'default_user = krika\ndefault_pass = %s\n' "$mq_password" | create rabbitmq_conf
fi

# RSA 2048, PKCS#8 PEM ("BEGIN PRIVATE KEY"): identity signs access tokens with it (RS256).
exists identity_signing_key && echo "secret identity_signing_key: exists, kept" \
    || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null \
        | create identity_signing_key
exists identity_token_pepper && echo "secret identity_token_pepper: exists, kept" \
    || openssl rand -base64 48 | tr -d '\n' | create identity_token_pepper
# The gateway's proof to the services (X-Krika-Edge): only then do they believe its client IP.
exists edge_secret && echo "secret edge_secret: exists, kept" \
    || openssl rand -base64 48 | tr -d '\n' | create edge_secret
# P-256, PKCS#8 PEM: notify's key for the one-time links identity seals into its events.
exists notify_link_key && echo "secret notify_link_key: exists, kept" \
    || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null \
        | create notify_link_key

# Grafana's admin password is for a person, and a Swarm secret cannot be read back: it is printed
# once, when generated. Set GRAFANA_ADMIN_PASSWORD to choose it instead.
if exists grafana_admin_password; then
    echo "secret grafana_admin_password: exists, kept"
elif [ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]; then
    printf '%s' "$GRAFANA_ADMIN_PASSWORD" | create grafana_admin_password
else
    grafana_password=$(openssl rand -hex 16)
    printf '%s' "$grafana_password" | create grafana_admin_password
    echo "Grafana login: admin / $grafana_password (store it now; it cannot be read back)"
fi

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

# The PostgreSQL password appears in every service's database URL. It is generated with
# postgres_password; a database URL added later (a new service) needs it again: a Swarm secret
# cannot be read back, so then pass it as POSTGRES_PASSWORD.
SERVICE_DATABASES="identity catalog orders payments notify"
if exists postgres_password; then
    echo "secret postgres_password: exists, kept"
    pg_password=${POSTGRES_PASSWORD:-}
else
    pg_password=$(openssl rand -hex 24)
    printf '%s' "$pg_password" | create postgres_password
fi
for svc in $SERVICE_DATABASES; do
    if exists "${svc}_database_url"; then
        echo "secret ${svc}_database_url: exists, kept"
    elif [ -z "$pg_password" ]; then
        echo "${svc}_database_url is missing and postgres_password exists: run again with" \
             "POSTGRES_PASSWORD set to its value" >&2
        exit 1
    else
        printf 'postgresql+asyncpg://krika:%s@postgres:5432/krika_%s' "$pg_password" "$svc" \
            | create "${svc}_database_url"
    fi
done

# ledger runs as its own role (krika_ledger_app, made by deploy/postgres/init-ledger-role.sh), which
# may not rewrite postings; its migrations run as the owner.
if exists ledger_app_password; then
    echo "secrets ledger_app_password, ledger_database_url, ledger_owner_database_url: kept"
elif [ -z "$pg_password" ]; then
    echo "the ledger secrets are missing and postgres_password exists: run again with" \
         "POSTGRES_PASSWORD set to its value" >&2
    exit 1
else
    ledger_password=$(openssl rand -hex 24)
    printf '%s' "$ledger_password" | create ledger_app_password
    printf 'postgresql+asyncpg://krika_ledger_app:%s@postgres:5432/krika_ledger' "$ledger_password" \
        | create ledger_database_url
    printf 'postgresql+asyncpg://krika:%s@postgres:5432/krika_ledger' "$pg_password" \
        | create ledger_owner_database_url
fi

# MongoDB (chat's database, the stack's `mongodb` single-node replica set rs0): its root user's
# password, the members' internal key (a keyFile, required by a replica set with access control),
# and the URL of each service on it. As with PostgreSQL, a URL added later needs the password
# again: then pass it as MONGODB_PASSWORD.
MONGODB_SERVICES="chat"
if exists mongodb_password; then
    echo "secret mongodb_password: exists, kept"
    mongo_password=${MONGODB_PASSWORD:-}
else
    mongo_password=$(openssl rand -hex 24)
    printf '%s' "$mongo_password" | create mongodb_password
fi
for svc in $MONGODB_SERVICES; do
    if exists "${svc}_mongodb_url"; then
        echo "secret ${svc}_mongodb_url: exists, kept"
    elif [ -z "$mongo_password" ]; then
        echo "${svc}_mongodb_url is missing and mongodb_password exists: run again with" \
             "MONGODB_PASSWORD set to its value" >&2
        exit 1
    else
        printf 'mongodb://krika:%s@mongodb:27017/?replicaSet=rs0&authSource=admin' \
            "$mongo_password" | create "${svc}_mongodb_url"
    fi
done
exists mongodb_keyfile && echo "secret mongodb_keyfile: exists, kept" \
    || openssl rand -base64 756 | create mongodb_keyfile

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
# P-256, PKCS#8 PEM: notify's key for the one-time links identity seals into its events. One
# secret for both: identity reads the public half from it, notify opens the links with it.
exists notify_link_key && echo "secret notify_link_key: exists, kept" \
    || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null \
        | create notify_link_key
# notify's HMAC key for the one-click unsubscribe links in its mails.
exists notify_unsubscribe_secret && echo "secret notify_unsubscribe_secret: exists, kept" \
    || openssl rand -base64 48 | tr -d '\n' | create notify_unsubscribe_secret

# The S3 credentials of the services that keep files (KYC documents, service media): an access
# key of the object store, not something to generate. Pass STORAGE_ACCESS_KEY_ID and
# STORAGE_SECRET_ACCESS_KEY the first time. Likewise PAYSTACK_SECRET_KEY: Paystack's secret key
# (sk_live_... or sk_test_...) from its dashboard, and NOTIFY_SMTP_PASSWORD: the password (or API
# key) of the SMTP relay notify sends through, for KRIKA_SMTP_USERNAME (docker-stack.yml).
for name in storage_access_key_id storage_secret_access_key paystack_secret_key \
    notify_smtp_password; do
    variable=$(echo "$name" | tr '[:lower:]' '[:upper:]')
    if exists "$name"; then
        echo "secret $name: exists, kept"
    elif [ -n "${!variable:-}" ]; then
        printf '%s' "${!variable}" | create "$name"
    else
        echo "secret $name: missing; run again with $variable set (see above)" >&2
        exit 1
    fi
done

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

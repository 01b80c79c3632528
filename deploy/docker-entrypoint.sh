#!/bin/sh
# krika-entrypoint: Swarm secrets into settings, optionally wait for dependencies, then exec.
#
# - For every NAME_FILE variable whose NAME is unset, NAME is set to the file's content
#   (the docker-library convention): IDENTITY_TOKEN_PEPPER_FILE=/run/secrets/... gives
#   IDENTITY_TOKEN_PEPPER. Settings that take a file path themselves are left alone.
# - KRIKA_WAIT_FOR="postgres:5432 rabbitmq:5672" waits (up to KRIKA_WAIT_TIMEOUT seconds, 120)
#   until each host:port accepts TCP connections: a one-off migration job started together
#   with the database does not fail just because the database is still booting.
set -eu

# Real settings whose value *is* a path, read by the service itself.
NATIVE_FILE_SETTINGS=" IDENTITY_SIGNING_KEY_FILE IDENTITY_LINK_KEY_FILE NOTIFY_LINK_KEY_FILE "

for var in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*_FILE\)=.*/\1/p'); do
    case "$NATIVE_FILE_SETTINGS" in *" $var "*) continue ;; esac
    name=${var%_FILE}
    eval "current=\${$name:-}"
    eval "path=\${$var}"
    if [ -n "$current" ]; then
        echo "krika-entrypoint: $name and $var are both set; keeping $name" >&2
        continue
    fi
    if [ ! -r "$path" ]; then
        echo "krika-entrypoint: $var points at $path, which is not readable" >&2
        exit 1
    fi
    value=$(cat "$path")
    export "$name=$value"
    unset "$var"
done

if [ -n "${KRIKA_WAIT_FOR:-}" ]; then
    python - "${KRIKA_WAIT_TIMEOUT:-120}" $KRIKA_WAIT_FOR <<'PY'
import socket, sys, time

timeout, targets = float(sys.argv[1]), sys.argv[2:]
deadline = time.monotonic() + timeout
for target in targets:
    host, _, port = target.rpartition(":")
    while True:
        try:
            socket.create_connection((host, int(port)), 2).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"krika-entrypoint: {target} not reachable after {timeout:.0f}s ({exc})")
            time.sleep(1)
PY
fi

exec "$@"

#!/bin/sh
# The `mongodb` task's health check (docker-stack.yml mounts this file as a Swarm config at
# /usr/local/bin/krika-mongodb-ready). On the first run it initiates the single-node replica set
# rs0, whose one member is `mongodb:27017` (the service's hostname, so clients on the overlay
# find the primary under the name the set advertises). An initiated set is left alone, so the
# check can run every 10 seconds. Healthy only while this member is the writable primary.
#
# Until the image's first-start initialisation has created the root user (and while it runs
# mongod without --replSet), the check fails and is retried: rs.status() then reports anything
# but NotYetInitialized, and nothing is initiated.
set -eu

password=$(cat "$MONGO_INITDB_ROOT_PASSWORD_FILE")
exec mongosh --quiet --norc "mongodb://127.0.0.1:27017/admin?directConnection=true" \
    --username "$MONGO_INITDB_ROOT_USERNAME" --password "$password" \
    --authenticationDatabase admin --eval '
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e; // code 94: no replica set config yet
  rs.initiate({_id: "rs0", members: [{_id: 0, host: "mongodb:27017"}]});
}
if (!db.hello().isWritablePrimary) quit(1);
'

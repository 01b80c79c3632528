"""pytest plugin (entry point `krika`): real PostgreSQL, RabbitMQ, Redis and Mongo-wire for tests.

The fixtures live with what they provide and are registered here:
- `krika_common.testing.servers`: the servers' URLs, `run_id`, `redis_client`;
- `krika_common.testing.databases`: `database_url` (from the conftest's `alembic_ini`),
  `db_engine`, `clean_db`, `session`, and `create_database` / `drop_database` /
  `alembic_upgrade` for tests that make databases of their own;
- `krika_common.testing.broker`: `events_exchange`, `event_bus_factory`, `events_observer`,
  `amqp_proxy`, `queue_depth`;
- `krika_common.testing.http`: `test_keys`, `mint_token`, `app_client`, `serving`;
- `krika_common.testing.storage`: `s3_endpoint` (moto in server mode), `s3_storage`,
  `local_storage`.
"""

from krika_common.testing import eventually
from krika_common.testing.broker import (
    EventsObserver,
    TcpProxy,
    _events_exchange_cleanup,
    amqp_proxy,
    event_bus_factory,
    events_exchange,
    events_observer,
    queue_depth,
)
from krika_common.testing.databases import (
    alembic_ini,
    alembic_upgrade,
    clean_db,
    create_database,
    database_url,
    db_engine,
    drop_database,
    session,
    truncate_all,
)
from krika_common.testing.http import app_client, mint_token, serving, test_keys
from krika_common.testing.servers import (
    amqp_url,
    mongodb_url,
    postgres_server_url,
    redis_client,
    redis_url,
    run_id,
    worker_id,
)
from krika_common.testing.storage import local_storage, s3_endpoint, s3_storage

__all__ = [
    "EventsObserver",
    "TcpProxy",
    "_events_exchange_cleanup",
    "alembic_ini",
    "alembic_upgrade",
    "amqp_proxy",
    "amqp_url",
    "app_client",
    "clean_db",
    "create_database",
    "database_url",
    "db_engine",
    "drop_database",
    "event_bus_factory",
    "events_exchange",
    "events_observer",
    "eventually",
    "local_storage",
    "mint_token",
    "mongodb_url",
    "postgres_server_url",
    "queue_depth",
    "redis_client",
    "redis_url",
    "run_id",
    "s3_endpoint",
    "s3_storage",
    "serving",
    "session",
    "test_keys",
    "truncate_all",
    "worker_id",
]

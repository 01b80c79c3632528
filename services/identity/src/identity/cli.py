"""`python -m identity.cli grant-admin EMAIL`: bootstrap the first admin of an installation.

Later admins are made through `PUT /users/{id}/roles` by an existing admin.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from identity import repository, service
from identity.config import Settings
from identity.models import Role
from krika_common.db import make_engine, make_sessionmaker


async def grant_admin(settings: Settings, email: str) -> bool:
    """Add the admin role, as an admin's `PUT /users/{id}/roles` would (same event)."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            user = await repository.get_user_by_email(session, email.lower())
            if user is None:
                return False
            roles = [Role(r) for r in {*user.roles, Role.admin.value}]
            await service.set_roles(session, user.id, user.id, roles)
            return True
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="identity.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant-admin", help="give a registered user the admin role")
    grant.add_argument("email")
    args = parser.parse_args(argv)
    if not asyncio.run(grant_admin(Settings(), args.email)):
        print(f"no user with e-mail {args.email}", file=sys.stderr)
        return 1
    print(f"{args.email} is now an admin (effective at their next login or refresh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

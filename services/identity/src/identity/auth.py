"""Who may do what in identity: privileged routes ask the database, not the token.

identity owns the truth about users, so an admin action loads the acting user and requires
them active and an admin now - a demoted or suspended admin's still-valid token is worth
nothing here (other services use the access marks, krika_common.access).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from identity import repository
from identity.models import Role, User
from krika_common.access import AccountSuspended
from krika_common.auth import CurrentUser
from krika_common.db import SessionDep
from krika_common.errors import Forbidden, raises


@raises(Forbidden, AccountSuspended)
async def acting_admin(principal: CurrentUser, session: SessionDep) -> User:
    user = await repository.get_user(session, principal.id)
    if user is None or not user.is_active:
        raise AccountSuspended()
    if Role.admin not in user.roles:
        raise Forbidden("Requires role: admin")
    return user


AdminDep = Annotated[User, Depends(acting_admin)]

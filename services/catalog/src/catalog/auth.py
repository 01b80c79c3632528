"""Who may do what in catalog: role dependencies, and the optional caller of public routes.

Ownership is checked by the use cases as they load the resource (catalog.service): someone
else's service or review answers 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from krika_common.access import AccountSuspended, TokenRevoked
from krika_common.auth import (
    AmbiguousCredentials,
    InvalidToken,
    Principal,
    TokenExpired,
    bearer_scheme,
    bearer_token,
    current_user,
    require_role,
)
from krika_common.errors import Unauthorized, raises

ProviderDep = Annotated[Principal, Depends(require_role("provider"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]


@raises(AmbiguousCredentials, Unauthorized, InvalidToken, TokenExpired, TokenRevoked)
@raises(AccountSuspended)
async def optional_user(
    request: Request, credentials: Annotated[object, Depends(bearer_scheme)]
) -> Principal | None:
    """The caller when a token is sent (verified like any other), None for anonymous reads."""
    if bearer_token(request) is None:
        return None
    return await current_user(request, credentials)


ViewerDep = Annotated[Principal | None, Depends(optional_user)]

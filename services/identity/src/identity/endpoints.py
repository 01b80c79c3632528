"""Identity routes: parse, authorise, call the use case, answer.

Endpoints return what the use case returns (ORM rows, token pairs); `response_model` turns it
into the documented schema. Dependencies are the `*Dep` aliases.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response, status

from identity import repository, service
from identity.auth import AdminDep
from identity.errors import (
    AccountSuspended,
    CannotModifySelf,
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    InvalidRefreshToken,
    RefreshTokenReused,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from identity.models import Role, User, UserStatus
from identity.schemas import (
    AdminUserOut,
    ChangePasswordIn,
    ForgotPasswordIn,
    LoginIn,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    SetRolesIn,
    SuspendIn,
    TokenPair,
    UpdateMeIn,
    UserOut,
    VerifyEmailIn,
)
from identity.security import PasswordHashingBusy
from identity.service import Identity
from identity.throttle import LoginThrottled
from krika_common.auth import CurrentUser
from krika_common.db import SessionDep
from krika_common.edge import client_ip
from krika_common.errors import responses
from krika_common.pagination import InvalidCursor, Page
from krika_common.schemas import Line


def get_identity(request: Request) -> Identity:
    idt: Identity = request.app.state.identity
    return idt


IdentityDep = Annotated[Identity, Depends(get_identity)]

auth = APIRouter(prefix="/auth", tags=["auth"])
users = APIRouter(prefix="/users", tags=["users"])


@auth.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=responses(EmailTaken, WeakPassword, PasswordHashingBusy),
)
async def register(body: RegisterIn, session: SessionDep, idt: IdentityDep) -> User:
    """Create a customer or provider account; a verification e-mail follows."""
    return await service.register(
        session,
        idt,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        role=body.role,
    )


@auth.post(
    "/login",
    response_model=TokenPair,
    responses=responses(InvalidCredentials, AccountSuspended, LoginThrottled, PasswordHashingBusy),
)
async def login(
    body: LoginIn, request: Request, session: SessionDep, idt: IdentityDep
) -> TokenPair:
    """Exchange e-mail and password for an access token and a refresh token."""
    return await service.login(
        session, idt, email=body.email, password=body.password, ip=client_ip(request)
    )


@auth.post(
    "/refresh",
    response_model=TokenPair,
    responses=responses(InvalidRefreshToken, RefreshTokenReused, AccountSuspended),
)
async def refresh(body: RefreshIn, session: SessionDep, idt: IdentityDep) -> TokenPair:
    """Rotate a refresh token: the old one is spent, a new pair is returned."""
    return await service.refresh(session, idt, body.refresh_token)


@auth.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def logout(body: RefreshIn, session: SessionDep, idt: IdentityDep) -> Response:
    """End the session the refresh token belongs to."""
    await service.logout(session, idt, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth.post("/verify-email", response_model=UserOut, responses=responses(InvalidOneTimeToken))
async def verify_email(body: VerifyEmailIn, session: SessionDep, idt: IdentityDep) -> User:
    """Confirm the e-mail address with the token from the verification e-mail."""
    return await service.verify_email(session, idt, body.token)


@auth.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=responses(UserNotFound),
)
async def resend_verification(user: CurrentUser, session: SessionDep, idt: IdentityDep) -> Response:
    """Send a new verification e-mail (earlier links stop working)."""
    await service.resend_verification(session, idt, user.id)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@auth.post("/forgot-password", status_code=status.HTTP_202_ACCEPTED, response_class=Response)
async def forgot_password(
    body: ForgotPasswordIn, request: Request, background: BackgroundTasks, idt: IdentityDep
) -> Response:
    """Ask for a password-reset e-mail; the answer is the same whether the account exists or not.

    The account is looked up after the answer is sent, so its timing tells nothing either.
    """
    background.add_task(
        service.send_password_reset, request.app.state.sessionmaker, idt, body.email
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


@auth.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidOneTimeToken, WeakPassword, PasswordHashingBusy),
)
async def reset_password(body: ResetPasswordIn, session: SessionDep, idt: IdentityDep) -> Response:
    """Set a new password with the token from the reset e-mail; every session is ended."""
    await service.reset_password(session, idt, body.token, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("/me", response_model=UserOut, responses=responses(UserNotFound))
async def get_me(user: CurrentUser, session: SessionDep) -> User:
    """The caller's own account."""
    return await service.active_user(session, user.id)


@users.patch("/me", response_model=UserOut, responses=responses(UserNotFound))
async def update_me(body: UpdateMeIn, user: CurrentUser, session: SessionDep) -> User:
    """Change the caller's profile."""
    return await service.update_me(session, user.id, full_name=body.full_name)


@users.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(WrongPassword, WeakPassword, PasswordHashingBusy, UserNotFound),
)
async def change_password(
    body: ChangePasswordIn, user: CurrentUser, session: SessionDep, idt: IdentityDep
) -> Response:
    """Change the password; every session (refresh token) is ended."""
    await service.change_password(session, idt, user.id, body.current_password, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("", response_model=Page[AdminUserOut], responses=responses(InvalidCursor))
async def list_users(
    _: AdminDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    role: Role | None = None,
    status: UserStatus | None = None,
    email: Annotated[Line | None, Query(max_length=320)] = None,
) -> Page[User]:
    """Admin: list users, newest first, filtered by role, status or part of the e-mail."""
    return await repository.list_users(
        session, cursor=cursor, limit=limit, role=role, status=status, email_contains=email
    )


@users.get(
    "/{user_id}",
    response_model=AdminUserOut,
    responses=responses(UserNotFound),
)
async def get_user(user_id: uuid.UUID, _: AdminDep, session: SessionDep) -> User:
    """Admin: one user."""
    user = await repository.get_user(session, user_id)
    if user is None:
        raise UserNotFound()
    return user


@users.put(
    "/{user_id}/roles",
    response_model=AdminUserOut,
    responses=responses(UserNotFound, CannotModifySelf),
)
async def set_roles(
    user_id: uuid.UUID, body: SetRolesIn, admin: AdminDep, session: SessionDep
) -> User:
    """Admin: replace a user's roles; their current tokens are refused until they refresh."""
    return await service.set_roles(session, admin.id, user_id, body.roles)


@users.post(
    "/{user_id}/suspend",
    response_model=AdminUserOut,
    responses=responses(UserNotFound, CannotModifySelf),
)
async def suspend(
    user_id: uuid.UUID, body: SuspendIn, admin: AdminDep, session: SessionDep
) -> User:
    """Admin: suspend a user; their sessions end and their access is refused."""
    return await service.suspend(session, admin.id, user_id, body.reason)


@users.post(
    "/{user_id}/reinstate",
    response_model=AdminUserOut,
    responses=responses(UserNotFound),
)
async def reinstate(user_id: uuid.UUID, _: AdminDep, session: SessionDep) -> User:
    """Admin: lift a suspension (the user logs in again)."""
    return await service.reinstate(session, user_id)

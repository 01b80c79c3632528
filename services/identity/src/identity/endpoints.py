"""Identity routes: parse, authorise, call the use case, answer.

Endpoints return what the use case returns (ORM rows, token pairs); `response_model` turns it
into the documented schema. Dependencies are the `*Dep` aliases.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)

from identity import kyc as kyc_use_cases
from identity import repository, service
from identity.auth import AdminDep
from identity.errors import (
    AccountSuspended,
    CannotModifySelf,
    CannotReviewOwnSubmission,
    EmailTaken,
    InvalidCredentials,
    InvalidKycDetails,
    InvalidOneTimeToken,
    InvalidRefreshToken,
    KycAlreadyApproved,
    KycAlreadyPending,
    KycNotPending,
    KycSubmissionNotFound,
    ProvidersOnly,
    RefreshTokenReused,
    UnexpectedFormField,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from identity.models import DocumentType, KycFileKind, KycSubmission, Role, User, UserStatus
from identity.schemas import (
    AdminUserOut,
    ChangePasswordIn,
    ForgotPasswordIn,
    KycStatusOut,
    KycSubmissionOut,
    KycSubmissionSummary,
    KycSubmittedOut,
    LoginIn,
    Name,
    RefreshIn,
    RegisterIn,
    RejectKycIn,
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
from krika_common.errors import NotFound, raises, responses
from krika_common.pagination import InvalidCursor, Page
from krika_common.schemas import Line
from krika_common.storage import UPLOAD_ERRORS, LinkInvalid, link_response


def get_identity(request: Request) -> Identity:
    idt: Identity = request.app.state.identity
    return idt


IdentityDep = Annotated[Identity, Depends(get_identity)]

auth = APIRouter(prefix="/auth", tags=["auth"])
users = APIRouter(prefix="/users", tags=["users"])
kyc = APIRouter(prefix="/kyc", tags=["kyc"])


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


# --- KYC --------------------------------------------------------------------------------------

_KYC_FORM = frozenset(
    {"legal_name", "date_of_birth", "country", "document_type", *(k.value for k in KycFileKind)}
)


@raises(UnexpectedFormField)
async def strict_form(request: Request) -> None:
    """A field we do not know, or one sent twice (which copy would count?), is refused."""
    form = await request.form()  # already parsed for the parameters; this reads the cache
    for name in form:
        if name not in _KYC_FORM or len(form.getlist(name)) > 1:
            raise UnexpectedFormField(f"Unexpected or repeated form field: {name[:50]!r}")


@kyc.post(
    "/submissions",
    status_code=status.HTTP_201_CREATED,
    response_model=KycSubmittedOut,
    responses=responses(
        ProvidersOnly,
        AccountSuspended,
        KycAlreadyPending,
        KycAlreadyApproved,
        InvalidKycDetails,
        *UPLOAD_ERRORS,
    ),
    dependencies=[Depends(strict_form)],
)
async def submit_kyc(
    principal: CurrentUser,
    session: SessionDep,
    idt: IdentityDep,
    legal_name: Annotated[Name, Form()],
    date_of_birth: Annotated[str, Form(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["1990-04-21"])],
    country: Annotated[str, Form(pattern=r"^[A-Za-z]{2}$", examples=["NG"])],
    document_type: Annotated[DocumentType, Form()],
    document_front: Annotated[UploadFile, File()],
    selfie: Annotated[UploadFile, File()],
    document_back: Annotated[UploadFile | None, File()] = None,
) -> KycSubmission:
    """Provider: send identity documents (images or PDF; the selfie an image) for review."""
    uploads = {
        KycFileKind.document_front: document_front,
        KycFileKind.document_back: document_back,
        KycFileKind.selfie: selfie,
    }
    files = {kind: await upload.read() for kind, upload in uploads.items() if upload is not None}
    details = kyc_use_cases.KycDetails(
        legal_name=legal_name,
        date_of_birth=date_of_birth,
        country=country,
        document_type=document_type,
    )
    return await kyc_use_cases.submit(session, idt, principal.id, details, files)


@kyc.get("/me", response_model=KycStatusOut)
async def my_kyc(principal: CurrentUser, session: SessionDep) -> KycStatusOut:
    """The caller's verification status (and the reason, if the last submission was rejected)."""
    return await kyc_use_cases.status_of(session, principal.id)


@kyc.get(
    "/submissions",
    response_model=Page[KycSubmissionSummary],
    responses=responses(InvalidCursor),
)
async def list_kyc_submissions(
    _: AdminDep,
    session: SessionDep,
    status: Literal["pending", "approved", "rejected"] | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[KycSubmission]:
    """Admin: the review queue, oldest first, filtered by status."""
    return await repository.list_kyc_submissions(session, status=status, cursor=cursor, limit=limit)


@kyc.get(
    "/submissions/{submission_id}",
    response_model=KycSubmissionOut,
    responses=responses(KycSubmissionNotFound),
)
async def get_kyc_submission(
    submission_id: uuid.UUID, principal: CurrentUser, session: SessionDep, idt: IdentityDep
) -> KycSubmissionOut:
    """Its provider or an admin: the submission, with links to its documents (valid minutes)."""
    return await kyc_use_cases.view(session, idt, principal.id, submission_id)


@kyc.post(
    "/submissions/{submission_id}/approve",
    response_model=KycSubmissionSummary,
    responses=responses(KycSubmissionNotFound, KycNotPending, CannotReviewOwnSubmission),
)
async def approve_kyc(
    submission_id: uuid.UUID, admin: AdminDep, session: SessionDep
) -> KycSubmission:
    """Admin: the provider's identity is verified; they may publish services."""
    return await kyc_use_cases.approve(session, admin.id, submission_id)


@kyc.post(
    "/submissions/{submission_id}/reject",
    response_model=KycSubmissionSummary,
    responses=responses(KycSubmissionNotFound, KycNotPending, CannotReviewOwnSubmission),
)
async def reject_kyc(
    submission_id: uuid.UUID, body: RejectKycIn, admin: AdminDep, session: SessionDep
) -> KycSubmission:
    """Admin: refuse the submission with a reason the provider sees; they may submit again."""
    return await kyc_use_cases.reject(session, admin.id, submission_id, body.reason)


@kyc.get(
    "/files/{folder}/{name}",
    response_class=Response,
    responses={
        200: {"content": {t: {} for t in ("image/jpeg", "image/png", "image/webp")}},
        **responses(LinkInvalid, NotFound),
    },
)
async def kyc_file(
    folder: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=64)],
    expires: Annotated[str, Query(max_length=12)],
    sig: Annotated[str, Query(max_length=64)],
    idt: IdentityDep,
) -> Response:
    """A document behind a signed link (public: the link is the credential, for minutes)."""
    return link_response(*await idt.storage.open_link(f"{folder}/{name}", expires, sig))

"""KYC use cases: a provider submits identity documents, an admin approves or rejects them.

Files are checked and stored (krika_common.storage: sniffed type, size, EXIF stripped from
images) before the submission row is written; if anything after that fails, the files just
stored are deleted again, so a refused submission leaves nothing behind. Documents are only
ever reachable through short-lived signed links, handed to the provider who sent them and to
admins. Events out (outbox): identity.kyc_submitted, identity.kyc_approved,
identity.kyc_rejected.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import pycountry
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from identity import repository
from identity.errors import (
    AccountSuspended,
    CannotReviewOwnSubmission,
    InvalidKycDetails,
    KycAlreadyApproved,
    KycAlreadyPending,
    KycNotPending,
    KycSubmissionNotFound,
    ProvidersOnly,
    UserNotFound,
)
from identity.models import DocumentType, KycFile, KycFileKind, KycStatus, KycSubmission, Role
from identity.schemas import KycDocumentOut, KycStatusOut, KycSubmissionOut
from identity.service import PRODUCER, Identity
from krika_common.db import utcnow
from krika_common.events import KycApproved, KycRejected, KycSubmitted, record_event
from krika_common.storage import DOCUMENTS, IMAGES, StoredFile, UploadKind

log = logging.getLogger(__name__)

FILE_PREFIX = "kyc"
# The public path of the signed-link route (through the gateway).
LINK_BASE = "/api/v1/kyc/files"
_OLDEST = 120  # years: a date of birth further back is a typo


@dataclass(frozen=True, slots=True)
class KycDetails:
    legal_name: str
    date_of_birth: str  # YYYY-MM-DD, checked here
    country: str
    document_type: DocumentType


def _kind_of(file: KycFileKind) -> UploadKind:
    # A document may be a scan (PDF); the selfie must be a photo.
    return IMAGES if file is KycFileKind.selfie else DOCUMENTS


def required_files(document_type: DocumentType) -> set[KycFileKind]:
    if document_type is DocumentType.passport:
        return {KycFileKind.document_front, KycFileKind.selfie}
    return set(KycFileKind)


def _years_between(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _check_details(details: KycDetails, minimum_age: int) -> tuple[date, str]:
    try:
        born = date.fromisoformat(details.date_of_birth)
    except ValueError as exc:
        raise InvalidKycDetails("date_of_birth is not a valid date (YYYY-MM-DD)") from exc
    today = utcnow().date()
    if born > today or _years_between(born, today) > _OLDEST:
        raise InvalidKycDetails("date_of_birth is not a plausible date of birth")
    if _years_between(born, today) < minimum_age:
        raise InvalidKycDetails(f"Providers must be at least {minimum_age} years old")
    country = details.country.upper()
    if len(country) != 2 or pycountry.countries.get(alpha_2=country) is None:
        raise InvalidKycDetails("country is not an ISO 3166-1 alpha-2 code")
    return born, country


async def _store_files(
    idt: Identity, files: dict[KycFileKind, bytes]
) -> dict[KycFileKind, StoredFile]:
    """Store every file, or none: a file refused after others were stored removes those."""
    stored: dict[KycFileKind, StoredFile] = {}
    try:
        for kind in sorted(files):  # a stable order, so a refusal names the same file each time
            stored[kind] = await idt.storage.put(files[kind], _kind_of(kind), prefix=FILE_PREFIX)
    except BaseException:
        await _discard(idt, stored.values())
        raise
    return stored


async def _discard(idt: Identity, files: Iterable[StoredFile]) -> None:
    for file in files:
        try:
            await idt.storage.delete(file.key)
        except Exception:  # the submission fails either way; an orphan file is only logged
            log.exception("could not delete the stored KYC file %s", file.key)


async def submit(
    session: AsyncSession,
    idt: Identity,
    user_id: uuid.UUID,
    details: KycDetails,
    files: dict[KycFileKind, bytes],
) -> KycSubmission:
    # The user's row is locked: one provider's submissions are decided one at a time.
    user = await repository.get_user(session, user_id, for_update=True)
    if user is None:
        raise UserNotFound()
    if not user.is_active:
        raise AccountSuspended()
    if Role.provider not in user.roles:
        raise ProvidersOnly()
    latest = await repository.latest_kyc_submission(session, user_id)
    if latest is not None and latest.status == KycStatus.pending:
        raise KycAlreadyPending()
    if latest is not None and latest.status == KycStatus.approved:
        raise KycAlreadyApproved()
    born, country = _check_details(details, idt.settings.kyc_minimum_age)
    missing = required_files(details.document_type) - files.keys()
    if missing:
        raise InvalidKycDetails(
            f"A {details.document_type.replace('_', ' ')} needs: {', '.join(sorted(missing))}"
        )
    if details.document_type is DocumentType.passport and KycFileKind.document_back in files:
        # Not stored "just in case": we keep no personal data we do not need.
        raise InvalidKycDetails("A passport has no back side: leave out document_back")
    stored = await _store_files(idt, files)
    try:
        submission = KycSubmission(
            user_id=user_id,
            legal_name=details.legal_name,
            date_of_birth=born,
            country=country,
            document_type=details.document_type,
        )
        session.add(submission)
        await session.flush()
        session.add_all(
            KycFile(
                submission_id=submission.id,
                kind=kind,
                key=file.key,
                content_type=file.content_type,
                size=file.size,
                sha256=file.sha256,
            )
            for kind, file in stored.items()
        )
        await record_event(
            session,
            KycSubmitted(
                submission_id=submission.id, user_id=user_id, submitted_at=submission.submitted_at
            ),
            producer=PRODUCER,
        )
        await session.flush()
    except IntegrityError as exc:  # only without the lock above: a concurrent submission
        await _discard(idt, stored.values())
        raise KycAlreadyPending() from exc
    except BaseException:
        await _discard(idt, stored.values())
        raise
    return submission


async def status_of(session: AsyncSession, user_id: uuid.UUID) -> KycStatusOut:
    latest = await repository.latest_kyc_submission(session, user_id)
    if latest is None:
        return KycStatusOut(status=KycStatus.none)
    return KycStatusOut(
        status=KycStatus(latest.status),
        reason=latest.reason,
        submission_id=latest.id,
        submitted_at=latest.submitted_at,
        decided_at=latest.decided_at,
    )


async def view(
    session: AsyncSession, idt: Identity, viewer_id: uuid.UUID, submission_id: uuid.UUID
) -> KycSubmissionOut:
    """The submission with fresh document links, for its provider or an active admin; anyone
    else is told it does not exist."""
    submission = await repository.get_kyc_submission(session, submission_id)
    if submission is None:
        raise KycSubmissionNotFound()
    if submission.user_id != viewer_id:
        viewer = await repository.get_user(session, viewer_id)
        if viewer is None or not viewer.is_active or Role.admin not in viewer.roles:
            raise KycSubmissionNotFound()
    ttl = timedelta(seconds=idt.settings.file_link_ttl)
    expires_at = utcnow() + ttl
    documents = [
        KycDocumentOut(
            kind=KycFileKind(file.kind),
            content_type=file.content_type,
            size=file.size,
            sha256=file.sha256,
            url=await idt.storage.signed_url(file.key, ttl),
        )
        for file in await repository.kyc_files(session, submission.id)
    ]
    return KycSubmissionOut.model_validate(
        {
            **submission.model_dump(),
            "documents": documents,
            "links_expire_at": expires_at.replace(microsecond=0),
        }
    )


async def _pending(
    session: AsyncSession, admin_id: uuid.UUID, submission_id: uuid.UUID
) -> KycSubmission:
    submission = await repository.get_kyc_submission(session, submission_id, for_update=True)
    if submission is None:
        raise KycSubmissionNotFound()
    if submission.user_id == admin_id:
        raise CannotReviewOwnSubmission()
    if submission.status != KycStatus.pending:
        raise KycNotPending()
    return submission


async def _decide(
    session: AsyncSession,
    admin_id: uuid.UUID,
    submission_id: uuid.UUID,
    status: KycStatus,
    reason: str | None = None,
) -> KycSubmission:
    submission = await _pending(session, admin_id, submission_id)
    submission.status = status
    submission.reason = reason
    submission.decided_at = utcnow()
    submission.decided_by = admin_id
    session.add(submission)
    decided = {
        "submission_id": submission.id,
        "user_id": submission.user_id,
        "decided_by": admin_id,
        "decided_at": submission.decided_at,
    }
    event = (
        KycApproved(**decided)
        if status is KycStatus.approved
        else KycRejected(**decided, reason=reason or "")
    )
    await record_event(session, event, producer=PRODUCER)
    await session.flush()
    return submission


async def approve(
    session: AsyncSession, admin_id: uuid.UUID, submission_id: uuid.UUID
) -> KycSubmission:
    return await _decide(session, admin_id, submission_id, KycStatus.approved)


async def reject(
    session: AsyncSession, admin_id: uuid.UUID, submission_id: uuid.UUID, reason: str
) -> KycSubmission:
    return await _decide(session, admin_id, submission_id, KycStatus.rejected, reason)

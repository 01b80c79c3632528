"""Identity's business errors (status + stable code)."""

from __future__ import annotations

from krika_common.access import AccountSuspended
from krika_common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized

__all__ = ["AccountSuspended"]  # shared with every service's access check


class EmailTaken(Conflict):
    code = "email_taken"
    message = "An account with this e-mail already exists"


class WeakPassword(BadRequest):
    status = 422
    code = "weak_password"
    message = "The password is too weak"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    message = "E-mail or password is wrong"


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    message = "The refresh token is invalid or expired"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    message = "This refresh token was already used; the session has been revoked"
    keeps_changes = True


class InvalidOneTimeToken(BadRequest):
    code = "invalid_token"
    message = "The link is invalid, expired or already used"


class UserNotFound(NotFound):
    code = "user_not_found"
    message = "No such user"


class CannotModifySelf(Conflict):
    code = "cannot_modify_self"
    message = "Admins cannot suspend themselves or remove their own admin role"


class WrongPassword(BadRequest):
    code = "wrong_password"
    message = "The current password is wrong"


class ProvidersOnly(Forbidden):
    code = "providers_only"
    message = "Only providers submit identity documents"


class KycAlreadyPending(Conflict):
    code = "kyc_pending"
    message = "A submission is already waiting for review"


class KycAlreadyApproved(Conflict):
    code = "kyc_already_approved"
    message = "Your identity is already verified"


class KycNotPending(Conflict):
    code = "kyc_not_pending"
    message = "This submission has already been decided"


class KycSubmissionNotFound(NotFound):
    code = "kyc_submission_not_found"
    message = "No such submission"


class CannotReviewOwnSubmission(Forbidden):
    code = "cannot_review_own_submission"
    message = "Admins cannot decide their own submission"


class InvalidKycDetails(BadRequest):
    """A field of the form is well-formed but not acceptable (the detail says which)."""

    status = 422
    code = "invalid_kyc_details"
    message = "The submission's details are not acceptable"


class UnexpectedFormField(BadRequest):
    status = 422
    code = "unexpected_form_field"
    message = "The form has a field it should not have, or a field twice"

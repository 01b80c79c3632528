"""Catalog's business errors (status + stable code)."""

from __future__ import annotations

from krika_common.access import AccountSuspended
from krika_common.errors import BadRequest, Conflict, Forbidden, NotFound

__all__ = ["AccountSuspended"]  # a suspended provider cannot publish (catalog's read model)


class CategoryNotFound(NotFound):
    code = "category_not_found"
    message = "No such category"


class ParentCategoryNotFound(BadRequest):
    status = 422
    code = "parent_not_found"
    message = "The parent category does not exist"


class UnknownCategory(BadRequest):
    status = 422
    code = "unknown_category"
    message = "The category does not exist"


class SlugTaken(Conflict):
    code = "slug_taken"
    message = "A category with this slug already exists"


class TooManyCategories(Conflict):
    code = "too_many_categories"
    message = "The category tree is full"


class ServiceNotFound(NotFound):
    code = "service_not_found"
    message = "No such service"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    message = "The service's current state does not allow this"


class KycRequired(Forbidden):
    code = "kyc_required"
    message = "Only providers whose identity is verified (KYC approved) may publish"


class MediaNotFound(NotFound):
    code = "media_not_found"
    message = "No such media"


class TooManyMedia(Conflict):
    code = "too_many_media"
    message = "The service's gallery is full"


class ReviewNotFound(NotFound):
    code = "review_not_found"
    message = "No such review"


class NotEligibleToReview(Forbidden):
    code = "not_eligible"
    message = "Only the customer of a completed order of this service may review it"


class AlreadyReviewed(Conflict):
    code = "already_reviewed"
    message = "This order has already been reviewed"


class AlreadyReplied(Conflict):
    code = "already_replied"
    message = "This review already has a reply"


class UnknownPackage(BadRequest):
    status = 422
    code = "unknown_package"
    message = "A package id does not belong to this service"

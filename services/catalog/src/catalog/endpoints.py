"""Catalog routes: parse, authorise, call the use case, answer.

Reads are public (services only while published and their provider is not suspended; the
owner sees their own in any state). Dependencies are the `*Dep` aliases.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)

from catalog import repository, service
from catalog.auth import AdminDep, ProviderDep, ViewerDep
from catalog.cache import ReadSessionDep
from catalog.errors import (
    AccountSuspended,
    AlreadyReplied,
    AlreadyReviewed,
    CategoryNotFound,
    InvalidTransition,
    KycRequired,
    MediaNotFound,
    NotEligibleToReview,
    ParentCategoryNotFound,
    ReviewNotFound,
    ServiceNotFound,
    SlugTaken,
    TooManyCategories,
    TooManyMedia,
    UnknownCategory,
    UnknownPackage,
)
from catalog.models import Review, Service
from catalog.schemas import (
    CategoryIn,
    CategoryOut,
    MediaOut,
    MyServiceSummary,
    ReplyIn,
    ReviewIn,
    ReviewOut,
    ServiceIn,
    ServiceOut,
    ServiceSummary,
    ServiceUpdate,
    SortOrder,
    average,
)
from catalog.search import SearchQuery, search
from catalog.service import Catalog
from krika_common.auth import CurrentUser
from krika_common.db import SessionDep
from krika_common.errors import NotFound, responses
from krika_common.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from krika_common.schemas import Line
from krika_common.storage import UPLOAD_ERRORS, LinkInvalid, link_response


def get_catalog(request: Request) -> Catalog:
    cat: Catalog = request.app.state.catalog
    return cat


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
Limit = Annotated[int, Query(ge=1, le=50)]
Cursor = Annotated[Line | None, Query(max_length=500)]

categories = APIRouter(prefix="/catalog/categories", tags=["categories"])
services = APIRouter(prefix="/catalog/services", tags=["services"])
reviews = APIRouter(prefix="/catalog/reviews", tags=["reviews"])
discovery = APIRouter(prefix="/catalog", tags=["search"])


# --- categories ----------------------------------------------------------------------------


@categories.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryOut,
    responses=responses(SlugTaken, ParentCategoryNotFound, TooManyCategories),
)
async def create_category(
    body: CategoryIn, _: AdminDep, session: SessionDep, cat: CatalogDep
) -> CategoryOut:
    """Admin: add a category (under `parent_id`, or at the top)."""
    return CategoryOut.model_validate(await service.create_category(session, cat, body))


@categories.get("", response_model=Page[CategoryOut], responses=responses(InvalidCursor))
async def list_categories(
    session: SessionDep,
    cat: CatalogDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> Page[CategoryOut]:
    """Every category, by slug; build the tree from `parent_id`."""
    found = await service.categories(session, cat)
    if cursor is not None:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, str):
            raise InvalidCursor()
        found = [c for c in found if c.slug > after]
    if len(found) <= limit:
        return Page(items=found)
    return Page(items=found[:limit], next_cursor=encode_cursor(found[limit - 1].slug))


@categories.get("/{ref}", response_model=CategoryOut, responses=responses(CategoryNotFound))
async def get_category(
    ref: Annotated[str, Path(max_length=64)], session: SessionDep, cat: CatalogDep
) -> CategoryOut:
    """One category, by id or slug."""
    return await service.category(session, cat, ref)


# --- services ------------------------------------------------------------------------------


@services.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ServiceOut,
    responses=responses(UnknownCategory),
)
async def create_service(
    body: ServiceIn, user: ProviderDep, session: SessionDep, cat: CatalogDep
) -> ServiceOut:
    """Provider: create a service (a draft until published) with 1 to 3 packages."""
    return await service.answer(cat, await service.create_service(session, cat, user.id, body))


@services.get("", response_model=Page[ServiceSummary], responses=responses(InvalidCursor))
async def list_services(
    session: ReadSessionDep,
    provider_id: uuid.UUID | None = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Page[ServiceSummary]:
    """Published services (of one provider with `provider_id`), newest first."""
    query = SearchQuery(provider_id=provider_id, sort="newest", cursor=cursor, limit=limit)
    return await search(session, query)


@services.get("/mine", response_model=Page[MyServiceSummary], responses=responses(InvalidCursor))
async def list_my_services(
    user: CurrentUser, session: SessionDep, cursor: Cursor = None, limit: Limit = 20
) -> Page[MyServiceSummary]:
    """The caller's own services in every state, newest first."""
    page = await repository.list_provider_services(session, user.id, cursor=cursor, limit=limit)
    return Page(items=[_mine(s) for s in page.items], next_cursor=page.next_cursor)


def _mine(s: Service) -> MyServiceSummary:
    return MyServiceSummary(
        id=s.id,
        title=s.title,
        provider_id=s.provider_id,
        category_id=s.category_id,
        starting_price=s.starting_price,
        currency=s.currency,
        rating_average=average(s.rating_average, s.rating_count),
        rating_count=s.rating_count,
        published_at=s.published_at,
        status=s.status,
        updated_at=s.updated_at,
    )


@services.get("/{service_id}", response_model=ServiceOut, responses=responses(ServiceNotFound))
async def get_service(
    service_id: uuid.UUID, viewer: ViewerDep, session: SessionDep, cat: CatalogDep
) -> ServiceOut:
    """A service: public while published; its owner sees it in any state."""
    view = await service.service_view(session, cat, service_id, viewer.id if viewer else None)
    return await service.answer(cat, view)


@services.patch(
    "/{service_id}",
    response_model=ServiceOut,
    responses=responses(ServiceNotFound, InvalidTransition, UnknownCategory, UnknownPackage),
)
async def update_service(
    service_id: uuid.UUID,
    body: ServiceUpdate,
    user: CurrentUser,
    session: SessionDep,
    cat: CatalogDep,
) -> ServiceOut:
    """Owner: change some fields; `packages` replaces the set (send an `id` to keep one)."""
    view = await service.update_service(session, cat, user.id, service_id, body)
    return await service.answer(cat, view)


@services.post(
    "/{service_id}/publish",
    response_model=ServiceOut,
    responses=responses(ServiceNotFound, InvalidTransition, KycRequired, AccountSuspended),
)
async def publish(
    service_id: uuid.UUID, user: CurrentUser, session: SessionDep, cat: CatalogDep
) -> ServiceOut:
    """Owner: publish a draft, or resume a paused service (KYC-approved providers only)."""
    view = await service.transition(session, cat, user.id, service_id, "publish")
    return await service.answer(cat, view)


@services.post(
    "/{service_id}/pause",
    response_model=ServiceOut,
    responses=responses(ServiceNotFound, InvalidTransition),
)
async def pause(
    service_id: uuid.UUID, user: CurrentUser, session: SessionDep, cat: CatalogDep
) -> ServiceOut:
    """Owner: take a published service out of search for a while."""
    view = await service.transition(session, cat, user.id, service_id, "pause")
    return await service.answer(cat, view)


@services.post(
    "/{service_id}/archive",
    response_model=ServiceOut,
    responses=responses(ServiceNotFound, InvalidTransition),
)
async def archive(
    service_id: uuid.UUID, user: CurrentUser, session: SessionDep, cat: CatalogDep
) -> ServiceOut:
    """Owner: retire the service for good (existing orders go on)."""
    view = await service.transition(session, cat, user.id, service_id, "archive")
    return await service.answer(cat, view)


@services.post(
    "/{service_id}/media",
    status_code=status.HTTP_201_CREATED,
    response_model=MediaOut,
    responses=responses(ServiceNotFound, InvalidTransition, TooManyMedia, *UPLOAD_ERRORS),
)
async def upload_media(
    service_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="A JPEG, PNG or WebP image, at most 10 MiB")],
    user: CurrentUser,
    session: SessionDep,
    cat: CatalogDep,
) -> MediaOut:
    """Owner: add an image to the gallery (re-encoded: its metadata, e.g. GPS, is dropped)."""
    data = await file.read()
    return await service.add_media(session, cat, user.id, service_id, data)


@services.delete(
    "/{service_id}/media/{media_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(ServiceNotFound, MediaNotFound),
)
async def delete_media(
    service_id: uuid.UUID,
    media_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    cat: CatalogDep,
    background: BackgroundTasks,
) -> Response:
    """Owner: remove an image from the gallery."""
    key = await service.delete_media(session, cat, user.id, service_id, media_id)
    # After the response, so after the session committed the row's removal.
    background.add_task(service.discard_file, cat, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- reviews -------------------------------------------------------------------------------


@services.post(
    "/{service_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewOut,
    responses=responses(ServiceNotFound, NotEligibleToReview, AlreadyReviewed),
)
async def post_review(
    service_id: uuid.UUID, body: ReviewIn, user: CurrentUser, session: SessionDep, cat: CatalogDep
) -> Review:
    """The customer of a completed order of this service: rate it, once per order."""
    return await service.post_review(
        session,
        cat,
        user.id,
        service_id,
        order_id=body.order_id,
        rating=body.rating,
        text=body.text,
    )


@services.get(
    "/{service_id}/reviews",
    response_model=Page[ReviewOut],
    responses=responses(ServiceNotFound, InvalidCursor),
)
async def list_reviews(
    service_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Page[Review]:
    """A service's reviews, newest first."""
    await service.visible_service(session, service_id, viewer.id if viewer else None)
    return await repository.list_reviews(session, service_id, cursor=cursor, limit=limit)


@reviews.post(
    "/{review_id}/reply",
    response_model=ReviewOut,
    responses=responses(ReviewNotFound, AlreadyReplied),
)
async def reply(
    review_id: uuid.UUID, body: ReplyIn, user: CurrentUser, session: SessionDep
) -> Review:
    """The service's provider: answer a review, once."""
    return await service.reply_to_review(session, user.id, review_id, body.text)


# --- search and files ----------------------------------------------------------------------


@discovery.get("/search", response_model=Page[ServiceSummary], responses=responses(InvalidCursor))
async def search_services(
    session: ReadSessionDep,
    q: Annotated[Line | None, Query(max_length=100)] = None,
    category: Annotated[Line | None, Query(max_length=64, description="id or slug")] = None,
    min_price: Annotated[int | None, Query(ge=0, le=10**12)] = None,
    max_price: Annotated[int | None, Query(ge=0, le=10**12)] = None,
    max_delivery_days: Annotated[
        int | None, Query(ge=1, le=365, description="some package delivers within it")
    ] = None,
    min_rating: Annotated[Decimal | None, Query(ge=0, le=5, max_digits=3)] = None,
    provider_id: uuid.UUID | None = None,
    sort: SortOrder = "relevance",
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Page[ServiceSummary]:
    """Search published services: words (typos and prefixes forgiven), filters, sort."""
    query = SearchQuery(
        q=q,
        category=category,
        min_price=min_price,
        max_price=max_price,
        max_delivery_days=max_delivery_days,
        min_rating=min_rating,
        provider_id=provider_id,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return await search(session, query)


@discovery.get(
    "/files/{folder}/{name}",
    response_class=Response,
    responses=responses(LinkInvalid, NotFound),
)
async def open_file(
    folder: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=64)],
    cat: CatalogDep,
    expires: Annotated[str, Query(max_length=12)] = "",
    sig: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """A gallery image behind a signed link (what the local store's links point at)."""
    return link_response(*await cat.storage.open_link(f"{folder}/{name}", expires, sig))

"""Catalog use cases. They flush, never commit: the request's session commits at the edge.

Every change to a service bumps its `revision`, marks its cached page stale and, once the
service has been published, records the matching event in the same transaction:
`catalog.service_published` (draft → published), `catalog.service_archived`, and
`catalog.service_updated` for anything else (details, packages, media, pause, resume).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from catalog import repository, states
from catalog.cache import CATEGORIES, PageCache, service_page
from catalog.config import Settings
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
from catalog.models import (
    Category,
    KycStatus,
    Media,
    Package,
    Review,
    Service,
    ServiceStatus,
)
from catalog.schemas import (
    CategoryIn,
    CategoryOut,
    MediaOut,
    MediaRef,
    PackageIn,
    PackageOut,
    ServiceIn,
    ServiceOut,
    ServiceUpdate,
    ServiceView,
    average,
)
from krika_common.db import utcnow
from krika_common.events import (
    PackageSnapshot,
    ReviewPosted,
    ServiceArchived,
    ServicePublished,
    ServiceUpdated,
    record_event,
)
from krika_common.storage import IMAGES, Storage

PRODUCER = "catalog"
log = logging.getLogger(__name__)
_CATEGORY_LIST = TypeAdapter(list[CategoryOut])


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the use cases need besides the session; built once in the app's lifespan."""

    settings: Settings
    storage: Storage
    cache: PageCache


# --- categories ----------------------------------------------------------------------------


async def create_category(session: AsyncSession, cat: Catalog, body: CategoryIn) -> Category:
    if await repository.count_categories(session) >= cat.settings.max_categories:
        raise TooManyCategories()
    if (
        body.parent_id is not None
        and await repository.get_category(session, body.parent_id) is None
    ):
        raise ParentCategoryNotFound()
    category = Category(name=body.name, slug=body.slug, parent_id=body.parent_id)
    session.add(category)
    try:
        await session.flush()
    except IntegrityError as exc:  # the unique slug
        raise SlugTaken() from exc
    await cat.cache.stale(session, CATEGORIES)
    return category


async def categories(session: AsyncSession, cat: Catalog) -> list[CategoryOut]:
    """The whole tree, by slug; from the cache when it has it."""
    generation, page = await cat.cache.read(CATEGORIES)
    if page is not None:
        return _CATEGORY_LIST.validate_json(page)
    found = [CategoryOut.model_validate(c) for c in await repository.all_categories(session)]
    await cat.cache.write(
        CATEGORIES, generation, _CATEGORY_LIST.dump_json(found), cat.settings.categories_cache_ttl
    )
    return found


async def category(session: AsyncSession, cat: Catalog, ref: str) -> CategoryOut:
    """One category by id or slug."""
    for found in await categories(session, cat):
        if str(found.id) == ref or found.slug == ref:
            return found
    raise CategoryNotFound()


# --- services: reading ---------------------------------------------------------------------


def is_public(service: Service) -> bool:
    return service.status == ServiceStatus.published and not service.provider_suspended


async def _view(session: AsyncSession, service: Service) -> ServiceView:
    packages = await repository.packages_of(session, service.id)
    media = await repository.media_of(session, service.id)
    return ServiceView(
        id=service.id,
        title=service.title,
        description=service.description,
        provider_id=service.provider_id,
        category_id=service.category_id,
        status=service.status,
        tags=service.tags,
        packages=[PackageOut.model_validate(p) for p in packages],
        starting_price=service.starting_price,
        currency=service.currency,
        rating_average=average(service.rating_average, service.rating_count),
        rating_count=service.rating_count,
        faq=service.faq,
        revision=service.revision,
        created_at=service.created_at,
        updated_at=service.updated_at,
        published_at=service.published_at,
        media=[MediaRef(id=m.id, key=m.key) for m in media],
    )


async def visible_service(
    session: AsyncSession, service_id: uuid.UUID, viewer: uuid.UUID | None
) -> Service:
    """The service if the viewer may see it: anyone while it is public, its owner always."""
    service = await repository.get_service(session, service_id)
    if service is None or not (is_public(service) or service.provider_id == viewer):
        raise ServiceNotFound()
    return service


async def service_view(
    session: AsyncSession, cat: Catalog, service_id: uuid.UUID, viewer: uuid.UUID | None
) -> ServiceView:
    """The service's page: the public one from the cache when it is there."""
    name = service_page(service_id)
    generation, page = await cat.cache.read(name)
    if page is not None:
        return ServiceView.model_validate_json(page)
    service = await visible_service(session, service_id, viewer)
    view = await _view(session, service)
    if is_public(service):
        await cat.cache.write(
            name, generation, view.model_dump_json().encode(), cat.settings.service_cache_ttl
        )
    return view


async def answer(cat: Catalog, view: ServiceView) -> ServiceOut:
    """The page as answered: each medium with a link signed now."""
    ttl = timedelta(seconds=cat.settings.file_link_ttl)
    media = [MediaOut(id=m.id, url=await cat.storage.signed_url(m.key, ttl)) for m in view.media]
    return ServiceOut(**view.model_dump(exclude={"media"}), media=media)


async def owned_service(session: AsyncSession, service_id: uuid.UUID, owner: uuid.UUID) -> Service:
    """The caller's own service, locked for the change; anyone else's is 404 (not 403: a
    stranger learns nothing about drafts)."""
    service = await repository.get_service(session, service_id, for_update=True)
    if service is None or service.provider_id != owner:
        raise ServiceNotFound()
    return service


# --- services: writing ---------------------------------------------------------------------


def _price_columns(service: Service, packages: list[Package]) -> None:
    cheapest = min(packages, key=lambda p: (p.price, p.position))
    service.starting_price = cheapest.price
    service.currency = cheapest.currency
    service.fastest_delivery_days = min(p.delivery_days for p in packages)


def _package(service_id: uuid.UUID, position: int, body: PackageIn) -> Package:
    return Package(
        service_id=service_id,
        position=position,
        name=body.name,
        description=body.description,
        price=body.price,
        currency=body.currency,
        delivery_days=body.delivery_days,
        revisions=body.revisions,
    )


async def _check_category(session: AsyncSession, category_id: uuid.UUID) -> None:
    if await repository.get_category(session, category_id) is None:
        raise UnknownCategory()


async def create_service(
    session: AsyncSession, cat: Catalog, provider_id: uuid.UUID, body: ServiceIn
) -> ServiceView:
    await _check_category(session, body.category_id)
    provider = await repository.provider_for(session, provider_id)
    service = Service(
        provider_id=provider_id,
        category_id=body.category_id,
        title=body.title,
        description=body.description,
        tags=body.tags,
        faq=[item.model_dump() for item in body.faq],
        provider_suspended=provider.suspended,
        starting_price=1,
        currency="NGN",
        fastest_delivery_days=1,
    )
    packages = [_package(service.id, i, p) for i, p in enumerate(body.packages)]
    _price_columns(service, packages)
    session.add(service)
    await session.flush()  # the service row before its packages (foreign key)
    session.add_all(packages)
    await session.flush()
    return await _view(session, service)


async def _replace_packages(
    session: AsyncSession, service: Service, wanted: list[PackageIn]
) -> list[Package]:
    current = {p.id: p for p in await repository.packages_of(session, service.id)}
    kept: list[Package] = []
    for position, body in enumerate(wanted):
        if body.id is None:
            package = _package(service.id, position, body)
            session.add(package)
        else:
            found = current.pop(body.id, None)
            if found is None:
                raise UnknownPackage()
            package = found
            package.position = position
            package.name = body.name
            package.description = body.description
            package.price = body.price
            package.currency = body.currency
            package.delivery_days = body.delivery_days
            package.revisions = body.revisions
        kept.append(package)
    await repository.delete_packages(session, list(current))
    return kept


async def _changed(
    session: AsyncSession,
    cat: Catalog,
    service: Service,
    event: type[ServicePublished | ServiceUpdated | ServiceArchived] | None = ServiceUpdated,
) -> ServiceView:
    """Bump the revision, invalidate the page and, if the world knows the service, tell it."""
    now = utcnow()
    service.revision += 1
    service.updated_at = now
    await session.flush()
    await cat.cache.stale(session, service_page(service.id))
    packages = await repository.packages_of(session, service.id)
    if event is not None and service.published_at is not None:
        await record_event(
            session,
            event(
                service_id=service.id,
                provider_id=service.provider_id,
                category_id=service.category_id,
                title=service.title,
                status=service.status,
                packages=[
                    PackageSnapshot(
                        id=p.id,
                        name=p.name,
                        price=p.price,
                        currency=p.currency,
                        delivery_days=p.delivery_days,
                        revisions=p.revisions,
                    )
                    for p in packages
                ],
                revision=service.revision,
                changed_at=now,
            ),
            producer=PRODUCER,
        )
    return await _view(session, service)


async def update_service(
    session: AsyncSession,
    cat: Catalog,
    owner: uuid.UUID,
    service_id: uuid.UUID,
    body: ServiceUpdate,
) -> ServiceView:
    service = await owned_service(session, service_id, owner)
    if not states.editable(service.status):
        raise InvalidTransition("An archived service cannot change")
    fields = body.model_fields_set
    if not fields:
        return await _view(session, service)
    if "category_id" in fields and body.category_id is not None:
        await _check_category(session, body.category_id)
        service.category_id = body.category_id
    if body.title is not None:
        service.title = body.title
    if body.description is not None:
        service.description = body.description
    if body.tags is not None:
        service.tags = body.tags
    if body.faq is not None:
        service.faq = [item.model_dump() for item in body.faq]
    if body.packages is not None:
        packages = await _replace_packages(session, service, body.packages)
        _price_columns(service, packages)
    return await _changed(session, cat, service)


async def transition(
    session: AsyncSession, cat: Catalog, owner: uuid.UUID, service_id: uuid.UUID, action: str
) -> ServiceView:
    """publish (also resumes a paused service), pause, archive."""
    # The provider's row first (FOR SHARE), then the service's: the suspension handler locks
    # in that order too, so the two serialise instead of deadlocking.
    provider = await repository.provider_for(session, owner)
    service = await owned_service(session, service_id, owner)
    target = states.next_status(service.status, action)
    if target is None:
        raise InvalidTransition(f"A {service.status} service cannot be {action}d")
    event: type[ServicePublished | ServiceUpdated | ServiceArchived] = ServiceUpdated
    if target == ServiceStatus.published:
        if provider.suspended:
            raise AccountSuspended()
        if provider.kyc_status != KycStatus.approved:
            raise KycRequired()
        service.provider_suspended = provider.suspended
        if service.published_at is None:
            service.published_at = utcnow()
            event = ServicePublished
    elif target == ServiceStatus.archived:
        event = ServiceArchived
    service.status = target
    return await _changed(session, cat, service, event)


async def add_media(
    session: AsyncSession, cat: Catalog, owner: uuid.UUID, service_id: uuid.UUID, data: bytes
) -> MediaOut:
    service = await owned_service(session, service_id, owner)
    if not states.editable(service.status):
        raise InvalidTransition("An archived service cannot change")
    if await repository.count_media(session, service.id) >= cat.settings.max_media_per_service:
        raise TooManyMedia()
    stored = await cat.storage.put(data, IMAGES, prefix="gallery")  # 413/415/422 before storing
    try:
        media = Media(
            service_id=service.id,
            key=stored.key,
            content_type=stored.content_type,
            size=stored.size,
        )
        session.add(media)
        await _changed(session, cat, service)
    except BaseException:  # no row will point at the file: remove it
        await discard_file(cat, stored.key)
        raise
    url = await cat.storage.signed_url(stored.key, timedelta(seconds=cat.settings.file_link_ttl))
    return MediaOut(id=media.id, url=url)


async def delete_media(
    session: AsyncSession,
    cat: Catalog,
    owner: uuid.UUID,
    service_id: uuid.UUID,
    media_id: uuid.UUID,
) -> str:
    """Remove the row; the caller deletes the file (the key returned) once this commits, so a
    failed commit never leaves a row pointing at a deleted file."""
    service = await owned_service(session, service_id, owner)
    media = await repository.get_media(session, service.id, media_id)
    if media is None:
        raise MediaNotFound()
    await session.delete(media)
    await _changed(session, cat, service)
    return media.key


async def discard_file(cat: Catalog, key: str) -> None:
    try:
        await cat.storage.delete(key)
    except Exception:  # unreachable either way: no row points at it
        log.exception("could not delete the gallery file %s", key)


# --- reviews -------------------------------------------------------------------------------


async def post_review(
    session: AsyncSession,
    cat: Catalog,
    customer: uuid.UUID,
    service_id: uuid.UUID,
    *,
    order_id: uuid.UUID,
    rating: int,
    text: str,
) -> Review:
    """The customer of a completed order of this service, once per order. The service row is
    locked while its rating moves, so sum and count always equal its reviews'."""
    service = await repository.get_service(session, service_id, for_update=True)
    if service is None:
        raise ServiceNotFound()
    order = await repository.get_completed_order(session, order_id)
    if order is None or order.service_id != service.id or order.customer_id != customer:
        raise NotEligibleToReview()
    if await repository.review_of_order(session, order_id) is not None:
        raise AlreadyReviewed()
    review = Review(
        service_id=service.id,
        order_id=order_id,
        customer_id=customer,
        provider_id=service.provider_id,
        rating=rating,
        text=text,
    )
    session.add(review)
    try:
        await session.flush()
    except IntegrityError as exc:  # the unique order_id
        raise AlreadyReviewed() from exc
    service.rating_sum += rating
    service.rating_count += 1
    service.rating_average = (Decimal(service.rating_sum) / service.rating_count).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    await cat.cache.stale(session, service_page(service.id))
    await record_event(
        session,
        ReviewPosted(
            review_id=review.id,
            service_id=service.id,
            order_id=order_id,
            provider_id=service.provider_id,
            customer_id=customer,
            rating=rating,
            posted_at=review.created_at,
        ),
        producer=PRODUCER,
    )
    return review


async def reply_to_review(
    session: AsyncSession, provider: uuid.UUID, review_id: uuid.UUID, text: str
) -> Review:
    review = await repository.get_review(session, review_id, for_update=True)
    if review is None or review.provider_id != provider:
        raise ReviewNotFound()
    if review.reply is not None:
        raise AlreadyReplied()
    review.reply = text
    review.replied_at = utcnow()
    return review

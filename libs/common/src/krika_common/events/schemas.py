"""Event payloads shared between services, by producing context. Fields of a version are fixed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from krika_common.events.envelope import EventData

# --- identity ---------------------------------------------------------------------------------


class UserRegistered(EventData):
    event_type = "identity.user_registered"
    event_version = 1

    user_id: uuid.UUID
    email: str
    full_name: str
    roles: list[str]


class _OneTimeLinkRequested(EventData):
    """Notify e-mails the user a link carrying the token (single use, valid until `expires_at`).

    The token is sealed for notify (`krika_common.events.sealed`): `unseal(sealed_token, key)`
    with notify's link key. Version 1 carried it in clear; it never had a consumer.
    """

    user_id: uuid.UUID
    email: str
    full_name: str
    sealed_token: str
    expires_at: datetime


class EmailVerificationRequested(_OneTimeLinkRequested):
    event_type = "identity.email_verification_requested"
    event_version = 2


class PasswordResetRequested(_OneTimeLinkRequested):
    event_type = "identity.password_reset_requested"
    event_version = 2


class UserSuspended(EventData):
    """Every access token of the user below `token_version` is refused (krika_common.access)."""

    event_type = "identity.user_suspended"
    event_version = 1

    user_id: uuid.UUID
    reason: str | None
    suspended_at: datetime
    # Added later in v1 (a compatible addition): 0 from producers that predate it.
    token_version: int = 0


class UserReinstated(EventData):
    """The suspension is lifted; tokens from before it (below `token_version`) stay refused."""

    event_type = "identity.user_reinstated"
    event_version = 1

    user_id: uuid.UUID
    reinstated_at: datetime
    token_version: int


class UserRolesChanged(EventData):
    """The user's roles are now `roles`; tokens below `token_version` carry the old ones."""

    event_type = "identity.user_roles_changed"
    event_version = 1

    user_id: uuid.UUID
    roles: list[str]
    changed_at: datetime
    token_version: int
    suspended: bool = False


class KycSubmitted(EventData):
    """A provider sent identity documents; an admin will decide."""

    event_type = "identity.kyc_submitted"
    event_version = 1

    submission_id: uuid.UUID
    user_id: uuid.UUID
    submitted_at: datetime


class KycApproved(EventData):
    """The provider's identity is verified: they may publish services and withdraw."""

    event_type = "identity.kyc_approved"
    event_version = 1

    submission_id: uuid.UUID
    user_id: uuid.UUID
    decided_by: uuid.UUID
    decided_at: datetime


class KycRejected(EventData):
    """The submission was refused (`reason` is shown to the provider); they may resubmit."""

    event_type = "identity.kyc_rejected"
    event_version = 1

    submission_id: uuid.UUID
    user_id: uuid.UUID
    reason: str
    decided_by: uuid.UUID
    decided_at: datetime


# --- catalog ----------------------------------------------------------------------------------


class PackageSnapshot(BaseModel):
    """One package as orders snapshots it (price in minor units)."""

    id: uuid.UUID
    name: str
    price: int
    currency: str
    delivery_days: int
    revisions: int


class _ServiceChanged(EventData):
    """The service as it is now: what orders needs to price an order from it."""

    service_id: uuid.UUID
    provider_id: uuid.UUID
    category_id: uuid.UUID
    title: str
    status: str
    packages: list[PackageSnapshot]
    # Increases with every change of the service: a consumer keeps the highest it has seen.
    revision: int
    changed_at: datetime


class ServicePublished(_ServiceChanged):
    event_type = "catalog.service_published"
    event_version = 1


class ServiceUpdated(_ServiceChanged):
    """Any other change: details, packages, paused, resumed."""

    event_type = "catalog.service_updated"
    event_version = 1


class ServiceArchived(_ServiceChanged):
    """No new orders; existing orders go on."""

    event_type = "catalog.service_archived"
    event_version = 1


class ReviewPosted(EventData):
    event_type = "catalog.review_posted"
    event_version = 1

    review_id: uuid.UUID
    service_id: uuid.UUID
    order_id: uuid.UUID
    provider_id: uuid.UUID
    customer_id: uuid.UUID
    rating: int
    posted_at: datetime


# --- orders ---------------------------------------------------------------------------------


class OrderPlaced(EventData):
    """A customer ordered a package; payments opens a payable for `price` (the snapshot)."""

    event_type = "orders.order_placed"
    event_version = 1

    order_id: uuid.UUID
    service_id: uuid.UUID
    package_id: uuid.UUID
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    title: str
    price: int
    currency: str
    placed_at: datetime


class OrderStatusChanged(EventData):
    """Every transition, for live pushes and notifications (`actor_role` "system" for timers)."""

    event_type = "orders.order_status_changed"
    event_version = 1

    order_id: uuid.UUID
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    from_status: str | None
    to_status: str
    actor_id: uuid.UUID | None
    actor_role: str
    note: str | None
    changed_at: datetime


class OrderCompleted(EventData):
    """The customer accepted the work (or it was accepted automatically): escrow is released
    and the customer may review the service."""

    event_type = "orders.order_completed"
    event_version = 1

    order_id: uuid.UUID
    service_id: uuid.UUID
    package_id: uuid.UUID
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    price: int
    currency: str
    completed_at: datetime


class OrderCancelled(EventData):
    """No work will be done. `paid`: money was captured for it, so payments refunds it."""

    event_type = "orders.order_cancelled"
    event_version = 1

    order_id: uuid.UUID
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    price: int
    currency: str
    paid: bool
    reason: str | None
    cancelled_by: str  # customer | provider | admin | system
    cancelled_at: datetime


# --- payments -------------------------------------------------------------------------------


class PaymentSucceeded(EventData):
    """Paystack confirmed the charge (verified with GET /transaction/verify)."""

    event_type = "payments.payment_succeeded"
    event_version = 1

    payment_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    reference: str
    amount: int
    currency: str
    paid_at: datetime


class PaymentFailed(EventData):
    event_type = "payments.payment_failed"
    event_version = 1

    payment_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    reference: str
    reason: str | None
    failed_at: datetime


class RefundSucceeded(EventData):
    """Paystack processed the refund of a payment (`reference` is the payment's)."""

    event_type = "payments.refund_succeeded"
    event_version = 1

    refund_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    reference: str
    amount: int
    currency: str
    refunded_at: datetime


class RefundFailed(EventData):
    """Paystack could not refund the payment: the money stays owed to the customer (ledger
    keeps it payable, visible to admins)."""

    event_type = "payments.refund_failed"
    event_version = 1

    refund_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    reference: str
    amount: int
    currency: str
    reason: str | None
    failed_at: datetime


class PayoutSucceeded(EventData):
    """A withdrawal reached the provider's bank (Paystack's transfer succeeded)."""

    event_type = "payments.payout_succeeded"
    event_version = 1

    withdrawal_id: uuid.UUID
    provider_id: uuid.UUID
    amount: int
    currency: str
    transfer_code: str | None
    paid_at: datetime


class PayoutFailed(EventData):
    """A withdrawal did not reach the bank (failed, reversed, or no payout account): ledger
    voids the reservation, so the money is available again."""

    event_type = "payments.payout_failed"
    event_version = 1

    withdrawal_id: uuid.UUID
    provider_id: uuid.UUID
    amount: int
    currency: str
    reason: str
    failed_at: datetime


class PayoutAccountAdded(EventData):
    """A provider's bank account is ready for payouts (a Paystack transfer recipient)."""

    event_type = "payments.payout_account_added"
    event_version = 1

    payout_account_id: uuid.UUID
    provider_id: uuid.UUID
    bank_code: str
    account_number_last4: str
    account_name: str
    currency: str
    added_at: datetime


class PayoutAccountRemoved(EventData):
    event_type = "payments.payout_account_removed"
    event_version = 1

    payout_account_id: uuid.UUID
    provider_id: uuid.UUID
    removed_at: datetime


# --- ledger ---------------------------------------------------------------------------------


class WithdrawalRequested(EventData):
    """A provider's withdrawal is reserved in the ledger; payments sends it to their bank with
    `withdrawal_id` as the transfer reference."""

    event_type = "ledger.withdrawal_requested"
    event_version = 1

    withdrawal_id: uuid.UUID
    provider_id: uuid.UUID
    amount: int
    currency: str
    requested_at: datetime


class ProviderCredited(EventData):
    """An order's escrow was released: the provider was credited `amount` (the price less the
    platform's `commission`) in their available balance."""

    event_type = "ledger.provider_credited"
    event_version = 1

    order_id: uuid.UUID
    provider_id: uuid.UUID
    amount: int
    commission: int
    currency: str
    credited_at: datetime


# --- chat -----------------------------------------------------------------------------------


class MessageSent(EventData):
    """A message was stored; notify reaches `offline_recipient_ids` (no open connection when it
    was sent) by e-mail, batched per conversation. `preview` is the body's start."""

    event_type = "chat.message_sent"
    event_version = 1

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    order_id: uuid.UUID | None
    sender_id: uuid.UUID
    recipient_ids: list[uuid.UUID]
    offline_recipient_ids: list[uuid.UUID]
    preview: str
    attachment_count: int
    sent_at: datetime


# --- notify ---------------------------------------------------------------------------------


class NotificationCreated(EventData):
    """An in-app notification was stored for `user_id`; chat pushes it to their open sockets."""

    event_type = "notify.notification_created"
    event_version = 1

    notification_id: uuid.UUID
    user_id: uuid.UUID
    kind: str
    title: str
    body: str
    created_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)

"""Events as their producers send them, for a customer, a provider and one order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from joserfc.jwk import ECKey

from krika_common.events import (
    EmailVerificationRequested,
    KycApproved,
    KycRejected,
    KycSubmitted,
    MessageSent,
    OrderCancelled,
    OrderPlaced,
    OrderStatusChanged,
    PasswordResetRequested,
    PaymentSucceeded,
    PayoutFailed,
    PayoutSucceeded,
    ProviderCredited,
    RefundSucceeded,
    ReviewPosted,
    UserRegistered,
)
from krika_common.events.sealed import seal

NGN = "NGN"
PRICE = 2_500_000


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    email: str
    full_name: str
    roles: tuple[str, ...]

    def registered(self) -> UserRegistered:
        return UserRegistered(
            user_id=self.id, email=self.email, full_name=self.full_name, roles=list(self.roles)
        )


def person(name: str, *roles: str) -> Person:
    user_id = uuid.uuid4()
    return Person(user_id, f"{name.lower()}.{user_id.hex[:8]}@example.com", name, roles)


@dataclass
class Market:
    """A customer, a provider and an order between them."""

    customer: Person = field(default_factory=lambda: person("Ada", "customer"))
    provider: Person = field(default_factory=lambda: person("Tunde", "provider"))
    order_id: uuid.UUID = field(default_factory=uuid.uuid4)
    service_id: uuid.UUID = field(default_factory=uuid.uuid4)
    title: str = "Logo design for a bakery"

    def placed(self) -> OrderPlaced:
        return OrderPlaced(
            order_id=self.order_id,
            service_id=self.service_id,
            package_id=uuid.uuid4(),
            customer_id=self.customer.id,
            provider_id=self.provider.id,
            title=self.title,
            price=PRICE,
            currency=NGN,
            placed_at=now(),
        )

    def paid(self) -> PaymentSucceeded:
        return PaymentSucceeded(
            payment_id=uuid.uuid4(),
            order_id=self.order_id,
            customer_id=self.customer.id,
            reference=f"krk_{uuid.uuid4().hex[:12]}",
            amount=PRICE,
            currency=NGN,
            paid_at=now(),
        )

    def status(
        self, from_status: str, to_status: str, actor: str, note: str | None = None
    ) -> OrderStatusChanged:
        actor_id = {"customer": self.customer.id, "provider": self.provider.id}.get(actor)
        return OrderStatusChanged(
            order_id=self.order_id,
            customer_id=self.customer.id,
            provider_id=self.provider.id,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor_id,
            actor_role=actor,
            note=note,
            changed_at=now(),
        )

    def cancelled(self, *, paid: bool, by: str = "customer") -> OrderCancelled:
        return OrderCancelled(
            order_id=self.order_id,
            customer_id=self.customer.id,
            provider_id=self.provider.id,
            price=PRICE,
            currency=NGN,
            paid=paid,
            reason="Changed my plans",
            cancelled_by=by,
            cancelled_at=now(),
        )

    def refunded(self) -> RefundSucceeded:
        return RefundSucceeded(
            refund_id=uuid.uuid4(),
            order_id=self.order_id,
            customer_id=self.customer.id,
            reference="krk_ref",
            amount=PRICE,
            currency=NGN,
            refunded_at=now(),
        )

    def credited(self) -> ProviderCredited:
        return ProviderCredited(
            order_id=self.order_id,
            provider_id=self.provider.id,
            amount=PRICE - 250_000,
            commission=250_000,
            currency=NGN,
            credited_at=now(),
        )

    def payout(self, *, ok: bool) -> PayoutSucceeded | PayoutFailed:
        if ok:
            return PayoutSucceeded(
                withdrawal_id=uuid.uuid4(),
                provider_id=self.provider.id,
                amount=1_000_000,
                currency=NGN,
                transfer_code="TRF_1",
                paid_at=now(),
            )
        return PayoutFailed(
            withdrawal_id=uuid.uuid4(),
            provider_id=self.provider.id,
            amount=1_000_000,
            currency=NGN,
            reason="Account number invalid",
            failed_at=now(),
        )

    def reviewed(self) -> ReviewPosted:
        return ReviewPosted(
            review_id=uuid.uuid4(),
            service_id=self.service_id,
            order_id=self.order_id,
            provider_id=self.provider.id,
            customer_id=self.customer.id,
            rating=5,
            posted_at=now(),
        )

    def message(self, preview: str, *, offline: bool = True) -> MessageSent:
        return MessageSent(
            message_id=uuid.uuid4(),
            conversation_id=uuid.uuid5(uuid.NAMESPACE_URL, str(self.order_id)),
            order_id=self.order_id,
            sender_id=self.customer.id,
            recipient_ids=[self.provider.id],
            offline_recipient_ids=[self.provider.id] if offline else [],
            preview=preview,
            attachment_count=0,
            sent_at=now(),
        )


def verification(who: Person, token: str, key: ECKey) -> EmailVerificationRequested:
    return EmailVerificationRequested(
        user_id=who.id,
        email=who.email,
        full_name=who.full_name,
        sealed_token=seal(token, key),
        expires_at=now() + timedelta(hours=48),
    )


def password_reset(who: Person, token: str, key: ECKey) -> PasswordResetRequested:
    return PasswordResetRequested(
        user_id=who.id,
        email=who.email,
        full_name=who.full_name,
        sealed_token=seal(token, key),
        expires_at=now() + timedelta(hours=1),
    )


def kyc_submitted(who: Person) -> KycSubmitted:
    return KycSubmitted(submission_id=uuid.uuid4(), user_id=who.id, submitted_at=now())


def kyc_approved(who: Person) -> KycApproved:
    return KycApproved(
        submission_id=uuid.uuid4(), user_id=who.id, decided_by=uuid.uuid4(), decided_at=now()
    )


def kyc_rejected(who: Person, reason: str) -> KycRejected:
    return KycRejected(
        submission_id=uuid.uuid4(),
        user_id=who.id,
        reason=reason,
        decided_by=uuid.uuid4(),
        decided_at=now(),
    )

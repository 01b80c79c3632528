"""The kinds of notification: what each is about, who may switch it off, where it goes.

A kind is the unit of preferences (e-mail and in-app, per user) and of the one-click
unsubscribe. Security e-mails (verification, password reset) cannot be switched off and have no
in-app copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    label: str  # how the preferences page and the unsubscribe page name it
    security: bool = False
    in_app: bool = True
    email: bool = True


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("welcome", "Welcome"),
        Kind("email_verification", "E-mail verification", security=True, in_app=False),
        Kind("password_reset", "Password reset", security=True, in_app=False),
        Kind("kyc_submitted", "Identity verification received"),
        Kind("kyc_approved", "Identity verification approved"),
        Kind("kyc_rejected", "Identity verification rejected"),
        Kind("order_placed", "New orders"),
        Kind("order_paid", "Order payments"),
        Kind("order_delivered", "Deliveries"),
        Kind("revision_requested", "Revision requests"),
        Kind("order_completed", "Completed orders"),
        Kind("order_cancelled", "Cancelled orders"),
        Kind("refund_processed", "Refunds"),
        Kind("provider_credited", "Earnings"),
        Kind("payout_succeeded", "Payouts"),
        Kind("payout_failed", "Failed payouts"),
        Kind("review_posted", "Reviews"),
        Kind("chat_message", "Messages while you are away", in_app=False),
    )
}

SECURITY = frozenset(k.name for k in KINDS.values() if k.security)
EMAIL_KINDS = tuple(k.name for k in KINDS.values() if k.email)
IN_APP_KINDS = tuple(k.name for k in KINDS.values() if k.in_app)

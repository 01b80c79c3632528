"""Ledger's business errors (status + stable code)."""

from __future__ import annotations

from krika_common.errors import BadRequest, Conflict, Forbidden, NotFound


class InsufficientFunds(Conflict):
    code = "insufficient_funds"
    message = "The amount is more than your available balance; nothing was reserved"


class AmountBelowMinimum(BadRequest):
    status = 422
    code = "amount_below_minimum"
    message = "The amount is below the smallest withdrawal"


class UnsupportedCurrency(BadRequest):
    status = 422
    code = "unsupported_currency"
    message = "Withdrawals are in the platform currency only"


class PayoutAccountRequired(Conflict):
    code = "payout_account_required"
    message = "Add a payout account (POST /payments/payout-accounts) before withdrawing"


class KycRequired(Forbidden):
    code = "kyc_required"
    message = "Withdrawals need an approved KYC submission"


class WithdrawalNotFound(NotFound):
    code = "withdrawal_not_found"
    message = "No such withdrawal of yours"

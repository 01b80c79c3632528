"""A frontend's moves through the gateway (`/api/v1`, docs/api.md), for the marketplace system
test and bench/journey.py: sign up, KYC, payout account, publish, search, order, check out, pay
on the Paystack sandbox's page, the order's steps, the wallet.

Every call goes through the gateway; what is asynchronous (another service learning of
something from an event) is polled with a deadline (`eventually`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from krika_common.testing import eventually
from krika_common.testing.storage import PDF, image_bytes, jpeg_with_gps

PASSWORD = "Correct-Horse-42"
CURRENCY = "NGN"
BANK = "058"  # Guaranty Trust Bank in the sandbox


@dataclass
class User:
    id: str
    email: str
    headers: dict[str, str] = field(repr=False)

    def idem(self, key: str | None = None) -> dict[str, str]:
        """Headers with an Idempotency-Key (a new one unless given)."""
        return self.headers | {"Idempotency-Key": key or uuid.uuid4().hex}


def ok(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    """The JSON body of an answer whose status is one of `statuses` (200, 201 by default)."""
    assert answer.status_code in (statuses or (200, 201)), (
        f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}"
    )
    body: dict[str, Any] = answer.json() if answer.content else {}
    return body


def commission(price: int, bps: int = 1000) -> int:
    """The platform's share, rounded half up (docs/api.md §8)."""
    return (price * bps + 5000) // 10000


async def log_in(api: httpx.AsyncClient, email: str) -> dict[str, str]:
    tokens = ok(await api.post("/auth/login", json={"email": email, "password": PASSWORD}))
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def sign_up(api: httpx.AsyncClient, role: str, name: str = "Ada Obi") -> User:
    email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "full_name": name, "role": role}
    user = ok(await api.post("/auth/register", json=body), 201)
    return User(user["id"], email, await log_in(api, email))


def kyc_form() -> dict[str, Any]:
    return {
        "data": {
            "legal_name": "Adaeze Obi",
            "date_of_birth": "1990-04-21",
            "country": "NG",
            "document_type": "national_id",
        },
        "files": {
            "document_front": ("front.png", image_bytes("PNG"), "image/png"),
            "document_back": ("back.pdf", PDF, "application/pdf"),
            "selfie": ("selfie.jpg", jpeg_with_gps(), "image/jpeg"),
        },
    }


async def verified_provider(api: httpx.AsyncClient, admin: User, name: str = "Adaeze") -> User:
    """A provider whose KYC an admin approved, with a payout account (sandbox bank 058)."""
    provider = await sign_up(api, "provider", name)
    submitted = ok(await api.post("/kyc/submissions", **kyc_form(), headers=provider.headers), 201)
    assert submitted["status"] == "pending"
    approved = ok(
        await api.post(f"/kyc/submissions/{submitted['id']}/approve", headers=admin.headers)
    )
    assert approved["status"] == "approved"
    number = f"{uuid.uuid4().int % 10**10:010d}"
    if number.startswith("000000"):  # the sandbox's "unknown account" numbers
        number = "1" + number[1:]
    account = ok(
        await api.post(
            "/payments/payout-accounts",
            json={"bank_code": BANK, "account_number": number},
            headers=provider.headers,
        ),
        201,
    )
    assert account["account_number_last4"] == number[-4:]
    return provider


async def new_category(api: httpx.AsyncClient, admin: User) -> str:
    slug = f"design-{uuid.uuid4().hex[:8]}"
    body = {"name": f"Design {slug[-8:]}", "slug": slug, "parent_id": None}
    return str(
        ok(await api.post("/catalog/categories", json=body, headers=admin.headers), 201)["id"]
    )


async def publish_service(
    api: httpx.AsyncClient,
    provider: User,
    category_id: str,
    *,
    title: str,
    prices: tuple[int, ...] = (2_500_050, 6_000_000),
    revisions: int = 1,
    within: float = 15.0,
) -> dict[str, Any]:
    """A service with one package per price, published once catalog has heard of the KYC
    approval; its public page."""
    packages = [
        {
            "name": ("Basic", "Standard", "Premium")[i],
            "description": f"Package {i + 1}",
            "price": price,
            "currency": CURRENCY,
            "delivery_days": 3 + i,
            "revisions": revisions,
        }
        for i, price in enumerate(prices)
    ]
    body = {
        "title": title,
        "description": "A logo, its colours and the files for print and screen.",
        "category_id": category_id,
        "tags": ["logo", "branding"],
        "packages": packages,
    }
    draft = ok(await api.post("/catalog/services", json=body, headers=provider.headers), 201)

    async def published() -> bool:
        answer = await api.post(
            f"/catalog/services/{draft['id']}/publish", headers=provider.headers
        )
        assert answer.status_code in (200, 403), answer.text  # 403 kyc_required until it hears
        return answer.status_code == 200

    await eventually(published, within=within, what="catalog letting the verified provider publish")
    return ok(await api.get(f"/catalog/services/{draft['id']}"))


async def place_order(
    api: httpx.AsyncClient,
    customer: User,
    service_id: str,
    package_id: str,
    *,
    within: float = 15.0,
) -> dict[str, Any]:
    """Place an order (Idempotency-Key), retried with the same key while orders has not yet
    heard of the service (422 unknown_service)."""
    key = uuid.uuid4().hex
    body = {"service_id": service_id, "package_id": package_id, "requirements": "Navy and gold"}
    placed: list[dict[str, Any]] = []

    async def accepted() -> bool:
        answer = await api.post("/orders", json=body, headers=customer.idem(key))
        assert answer.status_code in (201, 422), answer.text
        if answer.status_code == 201:
            placed.append(answer.json())
        return answer.status_code == 201

    await eventually(accepted, within=within, what="orders learning of the published service")
    return placed[-1]


async def check_out(
    api: httpx.AsyncClient, customer: User, order_id: str, *, within: float = 15.0
) -> dict[str, Any]:
    """`POST /payments/checkout` (Idempotency-Key), again while payments answers 409
    order_not_ready (it learns of the order from orders' event)."""
    key = uuid.uuid4().hex
    found: list[dict[str, Any]] = []

    async def started() -> bool:
        answer = await api.post(
            "/payments/checkout", json={"order_id": order_id}, headers=customer.idem(key)
        )
        if answer.status_code == 409 and answer.json()["error"] == "order_not_ready":
            return False
        found.append(ok(answer, 201))
        return True

    await eventually(started, within=within, what="payments learning of the order")
    return found[-1]


async def order(api: httpx.AsyncClient, user: User, order_id: str) -> dict[str, Any]:
    return ok(await api.get(f"/orders/{order_id}", headers=user.headers))


async def until_status(
    api: httpx.AsyncClient, user: User, order_id: str, status: str, *, within: float = 15.0
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def reached() -> bool:
        seen.append(await order(api, user, order_id))
        return bool(seen[-1]["status"] == status)

    await eventually(reached, within=within, what=f"order {order_id} {status}")
    return seen[-1]


async def act(
    api: httpx.AsyncClient,
    user: User,
    order_id: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An order step: start, deliver, request-revision, complete, cancel."""
    return ok(await api.post(f"/orders/{order_id}/{action}", json=body, headers=user.headers))


async def wallet(api: httpx.AsyncClient, user: User) -> dict[str, Any]:
    balances = ok(await api.get("/wallet", headers=user.headers))["balances"]
    (ngn,) = [b for b in balances if b["currency"] == CURRENCY]
    return dict(ngn)


async def until_wallet(
    api: httpx.AsyncClient, user: User, *, within: float = 15.0, **expected: int
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def matches() -> bool:
        seen.append(await wallet(api, user))
        return all(seen[-1][k] == v for k, v in expected.items())

    try:
        await eventually(matches, within=within, what=f"the wallet showing {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[-1] if seen else None}") from None
    return seen[-1]


async def until_withdrawal(
    api: httpx.AsyncClient, user: User, withdrawal_id: str, status: str, *, within: float = 20.0
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def reached() -> bool:
        seen.append(ok(await api.get(f"/wallet/withdrawals/{withdrawal_id}", headers=user.headers)))
        return bool(seen[-1]["status"] == status)

    await eventually(reached, within=within, what=f"withdrawal {withdrawal_id} {status}")
    return seen[-1]


async def withdraw(
    api: httpx.AsyncClient, provider: User, amount: int, *, within: float = 15.0
) -> dict[str, Any]:
    """`POST /wallet/withdrawals` (Idempotency-Key), again while ledger has not yet heard of the
    KYC approval or the payout account (403 kyc_required, 409 payout_account_required)."""
    key = uuid.uuid4().hex
    made: list[dict[str, Any]] = []

    async def accepted() -> bool:
        answer = await api.post(
            "/wallet/withdrawals",
            json={"amount": amount, "currency": CURRENCY},
            headers=provider.idem(key),
        )
        if answer.status_code in (403, 409) and answer.json()["error"] in (
            "kyc_required",
            "payout_account_required",
        ):
            return False
        made.append(ok(answer, 201))
        return True

    await eventually(accepted, within=within, what="ledger accepting the withdrawal")
    return made[-1]


async def accounts(api: httpx.AsyncClient, admin: User, **params: str) -> list[dict[str, Any]]:
    """Every ledger account matching `params` (kind, owner_id), all pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {}) | {"limit": "100"}
        page = ok(await api.get("/ledger/accounts", params=query, headers=admin.headers))
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def balance_of(api: httpx.AsyncClient, admin: User, kind: str, **params: str) -> int:
    """The sum of the balances of the accounts of a kind."""
    return sum(a["balance"] for a in await accounts(api, admin, kind=kind, **params))


async def invariants(api: httpx.AsyncClient, admin: User) -> dict[str, Any]:
    return ok(await api.get("/ledger/invariants", headers=admin.headers))


async def trial_balance(api: httpx.AsyncClient, admin: User) -> dict[str, Any]:
    return ok(await api.get("/ledger/trial-balance", headers=admin.headers))

"""`make demo`: the marketplace's happy path against a running `make up`, told step by step.

    make up                                   # in one terminal
    make demo                                 # in another: uv run --no-sync python scripts/demo.py

Everything goes through the gateway (http://127.0.0.1:8000/api/v1) as a frontend would: an admin
(made with the documented `python -m identity.cli grant-admin EMAIL`, run with the launcher's
development environment), a provider and a customer sign up; the provider passes KYC, adds a
payout account and publishes a service; the customer finds it, orders, checks out and pays on the
Paystack sandbox's checkout page; the work is delivered, revised once, delivered again, accepted
and reviewed; the provider is credited the price less the commission and withdraws it all. Each
step prints who did what, the order's state and the balances, with how long it took; the ledger's
trial balance ends it. Exit 0 when every step worked, 1 when one did not (it says which), 2 when
no gateway answers.

Nothing needs setting: new accounts each run, the sandbox's bank 058.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
from krika_dev.plan import LOCAL, PORTS, discover, environment
from krika_dev.provision import SECRETS_ENV, _read_env_file

PASSWORD = "Correct-Horse-42"  # noqa: S105 - the demo accounts' password
CURRENCY = "NGN"
WITHIN = 30.0  # seconds an asynchronous step (an event between services) may take
T = TypeVar("T")


class DemoFailed(Exception):
    """A step did not do what it should; the message says what happened instead."""


def naira(kobo: int) -> str:
    sign = "-" if kobo < 0 else ""
    whole, cents = divmod(abs(kobo), 100)
    return f"{sign}₦{whole:,}.{cents:02d}"


def commission(price: int, bps: int = 1000) -> int:
    return (price * bps + 5000) // 10000


class Story:
    """Numbered steps, each timed."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.number = 0
        self.started = time.monotonic()
        self.step_started = self.started

    def begin(self) -> None:
        self.step_started = time.monotonic()

    def tell(self, text: str) -> None:
        self.number += 1
        took = time.monotonic() - self.step_started
        lines = text.split("\n")
        self.out(f"{self.number:>3}. {took:6.2f} s  {lines[0]}")
        for line in lines[1:]:
            self.out(f"{'':>15}{line}")
        self.step_started = time.monotonic()


class Frontend:
    """The calls a web client makes, through the gateway."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(self, method: str, path: str, *expected: int, **kwargs: Any) -> Any:
        answer = self.client.request(method, path, **kwargs)
        if answer.status_code not in (expected or (200, 201)):
            raise DemoFailed(f"{method} /api/v1{path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def until(self, what: str, attempt: Callable[[], T | None], within: float = WITHIN) -> T:
        """Poll `attempt` until it returns something (not None), at most `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = attempt()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise DemoFailed(f"{what}: not within {within:.0f} s")
            time.sleep(0.05)


class Person:
    def __init__(self, name: str, role: str, api: Frontend) -> None:
        self.name = name
        self.api = api
        self.email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": self.email, "password": PASSWORD, "full_name": name, "role": role}
        self.id: str = api.call("POST", "/auth/register", 201, json=body)["id"]
        self.headers: dict[str, str] = {}
        self.log_in()

    def log_in(self) -> None:
        body = {"email": self.email, "password": PASSWORD}
        tokens = self.api.call("POST", "/auth/login", 200, json=body)
        self.headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.api.call("GET", path, 200, headers=self.headers, **kwargs)

    def post(self, path: str, *expected: int, **kwargs: Any) -> Any:
        return self.api.call("POST", path, *expected, headers=self.headers, **kwargs)

    def try_post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.api.client.post(
            path, headers=self.headers | kwargs.pop("headers", {}), **kwargs
        )

    def wallet(self) -> dict[str, int]:
        (ngn,) = [b for b in self.get("/wallet")["balances"] if b["currency"] == CURRENCY]
        return dict(ngn)


def image(kind: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 90, 160)).save(out, format=kind)
    return out.getvalue()


class CheckoutForm(HTMLParser):
    """The checkout page's form: its action, hidden fields and the button for an outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}  # value -> name

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = found.get("action", "")
        elif tag == "input" and found.get("type") == "hidden" and "name" in found:
            self.fields[found["name"]] = found.get("value", "")
        elif tag == "button" and "name" in found:
            self.buttons[found.get("value", "")] = found["name"]


def pay_on_checkout_page(authorization_url: str, outcome: str = "success") -> None:
    """What a browser does on the sandbox's page: open it, press Pay (the form's POST)."""
    with httpx.Client(timeout=15.0, trust_env=False) as browser:
        page = browser.get(authorization_url)
        page.raise_for_status()
        form = CheckoutForm()
        form.feed(page.text)
        if outcome not in form.buttons:
            raise DemoFailed(f"no {outcome!r} button on the checkout page {authorization_url}")
        data = form.fields | {form.buttons[outcome]: outcome}
        answer = browser.post(urljoin(str(page.url), form.action or str(page.url)), data=data)
        if answer.status_code not in (200, 303):
            raise DemoFailed(f"the checkout page answered {answer.status_code}: {answer.text}")


def grant_admin(email: str) -> str:
    """`python -m identity.cli grant-admin EMAIL` with the launcher's development environment
    (what `make up` gives identity; anything set in this environment wins)."""
    apps = discover()
    extra = _read_env_file(SECRETS_ENV)
    if (LOCAL / "keys" / "identity-signing.pem").is_file():
        extra["IDENTITY_SIGNING_KEY_FILE"] = str(LOCAL / "keys" / "identity-signing.pem")
    env = environment(apps, extra, dict(os.environ))
    command = [sys.executable, "-m", "identity.cli", "grant-admin", email]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise DemoFailed(f"`{' '.join(command[1:])}` failed: {done.stdout}{done.stderr}")
    return " ".join(["python", *command[1:]])


def run(gateway: str, out: Callable[[str], None] = print) -> None:
    story = Story(out)
    with httpx.Client(base_url=f"{gateway}/api/v1", timeout=30.0, trust_env=False) as client:
        api = Frontend(client)
        out(f"Krika demo: the marketplace's happy path through {gateway}/api/v1\n")

        # --- the people ------------------------------------------------------------------------
        amaka = Person("Amaka", "customer", api)
        command = grant_admin(amaka.email)
        amaka.log_in()  # the admin role is in the tokens issued from now on
        roles = ", ".join(amaka.get("/users/me")["roles"])
        story.tell(f"Amaka signs up and is made an admin: `{command}` (roles: {roles})")

        slug = f"logo-design-{uuid.uuid4().hex[:6]}"
        category = amaka.post(
            "/catalog/categories",
            201,
            json={"name": "Logo & brand design", "slug": slug, "parent_id": None},
        )
        story.tell(f'Amaka creates the category "{category["name"]}" ({category["slug"]})')

        chioma = Person("Chioma", "provider", api)
        story.tell(f"Chioma signs up as a provider ({chioma.email})")

        kyc = chioma.post(
            "/kyc/submissions",
            201,
            data={
                "legal_name": "Chioma Okafor",
                "date_of_birth": "1991-03-08",
                "country": "NG",
                "document_type": "national_id",
            },
            files={
                "document_front": ("id-front.png", image("PNG"), "image/png"),
                "document_back": ("id-back.png", image("PNG"), "image/png"),
                "selfie": ("selfie.jpg", image("JPEG"), "image/jpeg"),
            },
        )
        story.tell(
            f"Chioma sends her KYC documents (ID card, both sides, and a selfie): {kyc['status']}"
        )
        decided = amaka.post(f"/kyc/submissions/{kyc['id']}/approve", 200)
        story.tell(f"Amaka reviews and approves Chioma's KYC: {decided['status']}")

        number = str(1_000_000_000 + uuid.uuid4().int % 9_000_000_000)  # a 10-digit NUBAN
        account = chioma.post(
            "/payments/payout-accounts", 201, json={"bank_code": "058", "account_number": number}
        )
        story.tell(
            f"Chioma adds her payout account: {account['bank_name']} ••••"
            f"{account['account_number_last4']} in the name of {account['account_name']}"
        )

        title = f"Logo design for small businesses #{uuid.uuid4().hex[:4]}"
        packages = [
            {"name": "Basic", "description": "One logo, two concepts", "price": 2_500_050,
             "currency": CURRENCY, "delivery_days": 3, "revisions": 1},
            {"name": "Standard", "description": "Logo and brand colours", "price": 6_000_000,
             "currency": CURRENCY, "delivery_days": 5, "revisions": 2},
        ]  # fmt: skip
        draft = chioma.post(
            "/catalog/services",
            201,
            json={
                "title": title,
                "description": "A logo you will be proud of, with files for print and screen.",
                "category_id": category["id"],
                "tags": ["logo", "branding"],
                "packages": packages,
            },
        )

        def published() -> dict[str, Any] | None:
            answer = chioma.try_post(f"/catalog/services/{draft['id']}/publish")
            return answer.json() if answer.status_code == 200 else None

        service = api.until("catalog letting Chioma publish", published)
        offers = ", ".join(f"{p['name']} {naira(p['price'])}" for p in service["packages"])
        story.tell(f'Chioma publishes "{title}": {service["status"]} ({offers})')

        # --- the order ------------------------------------------------------------------------
        emeka = Person("Emeka", "customer", api)
        story.tell(f"Emeka signs up as a customer ({emeka.email})")

        found = api.call("GET", "/catalog/search", 200, params={"q": title})["items"]
        if [item["id"] for item in found] != [service["id"]]:
            raise DemoFailed(f"searching {title!r} found {found}")
        story.tell(
            f'Emeka searches "{title}": {len(found)} result, '
            f"from {naira(found[0]['starting_price'])}"
        )

        basic = service["packages"][0]
        body = {"service_id": service["id"], "package_id": basic["id"], "requirements": "Navy"}
        key = uuid.uuid4().hex

        def placed() -> dict[str, Any] | None:
            answer = emeka.try_post("/orders", json=body, headers={"Idempotency-Key": key})
            return answer.json() if answer.status_code == 201 else None

        order = api.until("orders learning of the service", placed)
        order_id = order["id"]
        story.tell(
            f"Emeka orders the {basic['name']} package: order {order_id[:8]} {order['status']}, "
            f"{naira(order['price'])}"
        )

        key = uuid.uuid4().hex

        def checked_out() -> dict[str, Any] | None:
            answer = emeka.try_post(
                "/payments/checkout", json={"order_id": order_id}, headers={"Idempotency-Key": key}
            )
            if answer.status_code == 409 and answer.json()["error"] == "order_not_ready":
                return None  # payments has not heard of the order yet
            if answer.status_code != 201:
                raise DemoFailed(f"checkout answered {answer.status_code}: {answer.text}")
            found: dict[str, Any] = answer.json()
            return found

        checkout = api.until("payments learning of the order", checked_out)
        story.tell(
            f"Emeka checks out: payment {checkout['reference']} of {naira(checkout['amount'])}"
            f"\npays at {checkout['authorization_url']}"
        )
        pay_on_checkout_page(checkout["authorization_url"])
        story.tell("Emeka presses Pay on the Paystack sandbox's checkout page")

        def status_is(status: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                current: dict[str, Any] = emeka.get(f"/orders/{order_id}")
                return current if current["status"] == status else None

            return check

        api.until("the order being paid", status_is("paid"))
        held = api.until(
            "ledger holding the money in escrow",
            lambda: w if (w := chioma.wallet())["in_escrow"] == order["price"] else None,
        )
        story.tell(
            "Paystack's webhook reaches payments, payments tells orders and ledger: order paid"
            f"\nChioma's wallet: in escrow {naira(held['in_escrow'])}, available "
            f"{naira(held['available'])}"
        )

        steps = [
            (chioma, "start", None, "Chioma starts the work"),
            (chioma, "deliver", {"message": "Two concepts attached", "attachment_ids": []},
             "Chioma delivers two concepts"),
            (emeka, "request-revision", {"note": "Bolder letters, please"},
             "Emeka asks for a revision"),
            (chioma, "deliver", {"message": "Bolder", "attachment_ids": []},
             "Chioma delivers the revised logo"),
            (emeka, "complete", None, "Emeka accepts the work"),
        ]  # fmt: skip
        for who, action, payload, text in steps:
            changed = who.post(f"/orders/{order_id}/{action}", 200, json=payload)
            revisions = f", revisions {changed['revisions_used']}/{changed['revisions_allowed']}"
            story.tell(f"{text}: order {changed['status']}{revisions}")

        def reviewed() -> dict[str, Any] | None:
            answer = emeka.try_post(
                f"/catalog/services/{service['id']}/reviews",
                json={"order_id": order_id, "rating": 5, "text": "Bold and clean. Thank you!"},
            )
            return answer.json() if answer.status_code == 201 else None

        review = api.until("catalog letting Emeka review", reviewed)
        page = api.call("GET", f"/catalog/services/{service['id']}", 200)
        story.tell(
            f"Emeka leaves a {review['rating']}-star review: the service is rated "
            f"{page['rating_average']} ({page['rating_count']} review)"
        )

        # --- the money ------------------------------------------------------------------------
        price = order["price"]
        net = price - commission(price)
        credited = api.until(
            "ledger crediting Chioma",
            lambda: w if (w := chioma.wallet())["available"] == net else None,
        )
        platform = sum(
            a["balance"]
            for a in amaka.get("/ledger/accounts", params={"kind": "commission"})["items"]
        )
        story.tell(
            f"ledger releases the escrow: Chioma is credited {naira(net)} ({naira(price)} less "
            f"{naira(commission(price))} commission, 10 %)"
            f"\nChioma's wallet: available {naira(credited['available'])}, in escrow "
            f"{naira(credited['in_escrow'])}, earned {naira(credited['lifetime_earned'])}"
            f"\nthe platform's commission account: {naira(platform)} (every order so far)"
        )

        key = uuid.uuid4().hex

        def withdrawn() -> dict[str, Any] | None:
            answer = chioma.try_post(
                "/wallet/withdrawals",
                json={"amount": net, "currency": CURRENCY},
                headers={"Idempotency-Key": key},
            )
            if answer.status_code in (403, 409) and answer.json()["error"] in (
                "kyc_required",
                "payout_account_required",
            ):
                return None  # ledger has not heard of the KYC approval or the account yet
            if answer.status_code != 201:
                raise DemoFailed(f"the withdrawal answered {answer.status_code}: {answer.text}")
            made: dict[str, Any] = answer.json()
            return made

        withdrawal = api.until("ledger accepting the withdrawal", withdrawn)
        reserved = chioma.wallet()
        story.tell(
            f"Chioma withdraws {naira(withdrawal['amount'])}: {withdrawal['status']}"
            f"\nChioma's wallet: available {naira(reserved['available'])}, reserved "
            f"{naira(reserved['reserved'])}"
        )

        def settled() -> dict[str, Any] | None:
            found: dict[str, Any] = chioma.get(f"/wallet/withdrawals/{withdrawal['id']}")
            if found["status"] == "failed":
                raise DemoFailed(f"the withdrawal failed: {found}")
            return found if found["status"] == "succeeded" else None

        done = api.until("the payout settling", settled)
        emptied = api.until(
            "the wallet emptying",
            lambda: w if (w := chioma.wallet())["reserved"] == 0 else None,
        )
        story.tell(
            "payments sends the transfer, the sandbox's bank settles it: "
            f"withdrawal {done['status']}"
            f"\nChioma's wallet: available {naira(emptied['available'])}, reserved "
            f"{naira(emptied['reserved'])}, earned {naira(emptied['lifetime_earned'])}"
        )

        checked = amaka.get("/ledger/invariants")
        failing = [c["name"] for c in checked["checks"] if not c["ok"]]
        if not checked["ok"]:
            raise DemoFailed(f"the ledger's invariants fail: {failing}")
        story.tell(f"Amaka checks the ledger's invariants: ok ({len(checked['checks'])} checks)")

        trial = amaka.get("/ledger/trial-balance")
        out("\nTrial balance (every order of this system so far; balance = debits less credits):")
        out(f"  {'account kind':<16}{'accounts':>9}{'debits':>18}{'credits':>18}{'balance':>18}")
        for line in trial["lines"]:
            out(
                f"  {line['kind']:<16}{line['accounts']:>9}{naira(line['debits']):>18}"
                f"{naira(line['credits']):>18}{naira(line['balance']):>18}"
            )
        for currency, total in trial["totals"].items():
            out(f"  {'total ' + currency:<61}{naira(total):>18}")
        out(f"\nThe whole journey took {time.monotonic() - story.started:.1f} s.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--gateway",
        default=os.environ.get("KRIKA_GATEWAY", f"http://127.0.0.1:{PORTS['gateway']}"),
        help="the gateway's base URL (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        httpx.get(f"{args.gateway}/healthz", timeout=3.0, trust_env=False).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"no gateway at {args.gateway} ({exc}): start the system with `make up` first")
        return 2
    try:
        run(args.gateway)
    except DemoFailed as exc:
        print(f"\nthe demo stopped: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""identity attacked as a hostile client would: each test is a defect found that way (issue 5)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.app import create_app
from identity.config import Settings
from krika_common.server import free_port
from krika_common.testing.http import app_client, serving

from .factories import PASSWORD, bearer, link_token, login, make_admin, outbox_events, register

EDGE = "test-edge-secret"
RESET = "identity.password_reset_requested"


def from_ip(ip: str) -> dict[str, str]:
    """Headers of a request the gateway forwards for a client at `ip`."""
    return {"X-Krika-Edge": EDGE, "X-Krika-Client-IP": ip}


async def admin_headers(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> tuple[str, dict[str, str]]:
    admin = await register(client)
    await make_admin(engine, admin["id"])
    return admin["id"], bearer(await login(client, admin["email"]))


# --- admin power lives in the database, not in the token ------------------------------------


async def test_a_demoted_admin_cannot_promote_themselves_back(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin_id, headers = await admin_headers(client, clean_db)  # token says: admin
    other_id, other = await admin_headers(client, clean_db)
    demoted = await client.put(
        f"/users/{admin_id}/roles", headers=other, json={"roles": ["customer"]}
    )
    assert demoted.status_code == 200

    again = await client.put(f"/users/{admin_id}/roles", headers=headers, json={"roles": ["admin"]})
    assert again.status_code == 403
    assert again.json()["error"] == "forbidden"
    assert (await client.get("/users", headers=headers)).status_code == 403
    events = await outbox_events(clean_db, "identity.user_roles_changed")
    assert [(e["data"]["user_id"], e["data"]["roles"]) for e in events] == [
        (admin_id, ["customer"])
    ]
    assert events[0]["data"]["token_version"] == 1
    assert other_id != admin_id


async def test_a_suspended_admin_keeps_no_admin_power(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin_id, headers = await admin_headers(client, clean_db)
    _, other = await admin_headers(client, clean_db)
    assert (await client.post(f"/users/{admin_id}/suspend", headers=other, json={})).is_success

    for method, path in [
        ("POST", f"/users/{admin_id}/reinstate"),
        ("GET", "/users"),
        ("PUT", f"/users/{admin_id}/roles"),
    ]:
        response = await client.request(method, path, headers=headers, json={"roles": ["admin"]})
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "account_suspended"


async def test_access_changes_carry_the_token_version(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, headers = await admin_headers(client, clean_db)
    user = await register(client)
    await client.post(f"/users/{user['id']}/suspend", headers=headers, json={})
    await client.post(f"/users/{user['id']}/reinstate", headers=headers)
    await client.post(f"/users/{user['id']}/reinstate", headers=headers)  # no-op: no event
    await client.put(f"/users/{user['id']}/roles", headers=headers, json={"roles": ["provider"]})
    await client.put(f"/users/{user['id']}/roles", headers=headers, json={"roles": ["provider"]})
    versions = [
        (e["type"], e["data"]["token_version"])
        for e in await outbox_events(clean_db)
        if e["data"].get("user_id") == user["id"] and "token_version" in e["data"]
    ]
    assert versions == [
        ("identity.user_suspended", 1),
        ("identity.user_reinstated", 2),
        ("identity.user_roles_changed", 3),
    ]
    tokens = await login(client, user["email"])
    claims = tokens["access_token"].split(".")[1]
    import base64
    import json

    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["ver"] == 3
    assert payload["roles"] == ["provider"]


# --- login throttling --------------------------------------------------------------------------


async def test_concurrent_guesses_are_counted_before_they_are_checked(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    guesses = [f"Wrong-guess-{i:02d}" for i in range(29)]
    guesses.insert(17, PASSWORD)  # the right one, somewhere in the burst
    answers = await asyncio.gather(
        *(
            client.post(
                "/auth/login",
                json={"email": user["email"], "password": p},
                headers=from_ip("198.51.100.9"),
            )
            for p in guesses
        )
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) >= 25  # the limit is 5 attempts per account and IP
    assert len([s for s in statuses if s != 429]) <= 5


async def test_an_attacker_cannot_lock_the_owner_out(client: httpx.AsyncClient) -> None:
    user = await register(client)
    owner = from_ip("203.0.113.10")
    await login_from(client, user["email"], PASSWORD, owner)  # the owner's usual client

    attacker = from_ip("198.51.100.66")
    wrong = {"email": user["email"], "password": "Wrong-pass-1"}
    for _ in range(5):
        assert (await client.post("/auth/login", json=wrong, headers=attacker)).status_code == 401
    blocked = await client.post("/auth/login", json=wrong, headers=attacker)
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 900

    await login_from(client, user["email"], PASSWORD, owner)
    # Even a device the owner never used is fine: one attacker IP is not a distributed attack.
    await login_from(client, user["email"], PASSWORD, from_ip("192.0.2.44"))


async def test_guesses_from_many_addresses_close_the_account_to_strangers_only(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    known = from_ip("203.0.113.10")
    await login_from(client, user["email"], PASSWORD, known)
    wrong = {"email": user["email"], "password": "Wrong-pass-1"}
    for i in range(12):  # the per-account limit in the tests' settings, from 12 addresses
        response = await client.post("/auth/login", json=wrong, headers=from_ip(f"10.9.0.{i}"))
        assert response.status_code == 401
    stranger = await client.post(
        "/auth/login",
        json={"email": user["email"], "password": PASSWORD},
        headers=from_ip("192.0.2.44"),
    )
    assert stranger.status_code == 429
    await login_from(client, user["email"], PASSWORD, known)


async def test_a_client_cannot_choose_its_ip(client: httpx.AsyncClient) -> None:
    """Without the gateway's secret, X-Forwarded-For and X-Krika-Client-IP are not believed:
    every guess counts against the caller's real address."""
    user = await register(client)
    wrong = {"email": user["email"], "password": "Wrong-pass-1"}
    for i in range(5):
        spoofed = {"X-Forwarded-For": f"10.0.0.{i}", "X-Krika-Client-IP": f"10.0.0.{i}"}
        assert (await client.post("/auth/login", json=wrong, headers=spoofed)).status_code == 401
    spoofed = {"X-Forwarded-For": "10.0.0.99", "X-Krika-Client-IP": "10.0.0.99"}
    assert (await client.post("/auth/login", json=wrong, headers=spoofed)).status_code == 429


async def login_from(
    client: httpx.AsyncClient, email: str, password: str, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text


# --- argon2's memory is bounded ----------------------------------------------------------------


async def test_sign_ins_beyond_the_hashing_budget_are_refused_not_queued(
    settings: Settings, clean_db: AsyncEngine, redis_client: object
) -> None:
    bounded = settings.model_copy(
        update={
            "argon2_time_cost": 2,
            "argon2_memory_cost": 16 * 1024,
            "password_hash_memory_budget": 32 * 1024,  # two hashes at a time
            "password_hash_queue": 2,
            "login_attempts_per_ip": 100,
        }
    )
    async with app_client(create_app(bounded)) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/auth/login",
                    json={"email": f"nobody-{i}@example.com", "password": "Whatever-123"},
                )
                for i in range(24)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) >= 4  # two hashing, two waiting at least
    busy = [a for a in answers if a.status_code == 503]
    assert len(busy) >= 12
    assert {a.json()["error"] for a in busy} == {"busy"}
    assert {a.headers["retry-after"] for a in busy} == {"1"}


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A\u0000B", "A\u0007B", "line\nbreak"])
async def test_control_characters_are_refused_not_a_500(
    client: httpx.AsyncClient, clean_db: AsyncEngine, name: str
) -> None:
    body = {"email": "nul@example.com", "password": PASSWORD, "full_name": name, "role": "customer"}
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "control_characters"
    user = await register(client)
    headers = bearer(await login(client, user["email"]))
    patch = await client.patch("/users/me", headers=headers, json={"full_name": name})
    assert patch.status_code == 422
    _, admin = await admin_headers(client, clean_db)
    listed = await client.get("/users", headers=admin, params={"email": name})
    assert listed.status_code == 422


async def test_lookalike_email_is_the_same_account(client: httpx.AsyncClient) -> None:
    await register(client, email="ada@example.com")
    fullwidth = "\uff41\uff44\uff41\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
    again = await client.post(
        "/auth/register",
        json={"email": fullwidth, "password": PASSWORD, "full_name": "X Y", "role": "customer"},
    )
    assert again.status_code == 409
    await login(client, fullwidth)


async def test_passwords_are_taken_exactly_as_typed(client: httpx.AsyncClient) -> None:
    user = await register(client, password="  Spaced-Secret-42  ")
    stripped = await client.post(
        "/auth/login", json={"email": user["email"], "password": "Spaced-Secret-42"}
    )
    assert stripped.status_code == 401
    await login(client, user["email"], "  Spaced-Secret-42  ")


# --- one-time links ------------------------------------------------------------------------------


async def test_a_reset_link_dies_with_a_password_change(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    user = await register(client)
    await client.post("/auth/forgot-password", json={"email": user["email"]})
    token = await link_token(clean_db, RESET, link_key)
    changed = await client.post(
        "/users/me/password",
        headers=bearer(await login(client, user["email"])),
        json={"current_password": PASSWORD, "new_password": "Brand-New-Secret-9"},
    )
    assert changed.status_code == 204
    reset = await client.post(
        "/auth/reset-password", json={"token": token, "password": "Evil-Reset-77"}
    )
    assert reset.status_code == 400
    assert reset.json()["error"] == "invalid_token"


async def test_a_suspended_user_cannot_reset(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    _, admin = await admin_headers(client, clean_db)
    user = await register(client)
    await client.post("/auth/forgot-password", json={"email": user["email"]})
    before = await link_token(clean_db, RESET, link_key)
    await client.post(f"/users/{user['id']}/suspend", headers=admin, json={})
    reset = await client.post(
        "/auth/reset-password", json={"token": before, "password": "Evil-Reset-77"}
    )
    assert reset.status_code == 400
    await client.post("/auth/forgot-password", json={"email": user["email"]})
    assert len(await outbox_events(clean_db, RESET)) == 1  # nothing new for a suspended account


async def test_reset_mail_is_limited_per_account(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    user = await register(client)
    for _ in range(6):
        answer = await client.post("/auth/forgot-password", json={"email": user["email"]})
        assert answer.status_code == 202
    assert len(await outbox_events(clean_db, RESET)) == 3  # password_resets_per_account


async def test_forgot_password_answers_before_looking_the_account_up(
    settings: Settings, clean_db: AsyncEngine, redis_client: object
) -> None:
    """The answer must not wait for the account's lookup (its timing would tell whether the
    account exists): with the users table locked, the answer still comes, and the mail
    follows once the lock is gone."""
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        user = await register(client)
        async with clean_db.connect() as locker:
            transaction = await locker.begin()
            await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            answer = await asyncio.wait_for(
                client.post("/auth/forgot-password", json={"email": user["email"]}), 3
            )
            assert answer.status_code == 202
            assert answer.content == b""
            await transaction.rollback()

        async def mailed() -> bool:
            return len(await outbox_events(clean_db, RESET)) == 1

        from krika_common.testing import eventually

        await eventually(mailed, what="the reset event")
    assert uuid.UUID(user["id"])


async def test_anonymous_logins_cannot_exhaust_memory(
    settings: Settings, clean_db: AsyncEngine, redis_client: object, tmp_path: Path
) -> None:
    """The real thing: `python -m identity` with production argon2 cost (64 MiB a hash), 24
    logins for unknown e-mails at once. Its peak memory grows by the hashing budget at most
    (192 MiB: three hashes at a time), not by 64 MiB per concurrent login."""
    port = free_port()
    env = {
        **os.environ,
        "IDENTITY_ENVIRONMENT": "test",
        "IDENTITY_PORT": str(port),
        "IDENTITY_DATABASE_URL": settings.database_url,
        "IDENTITY_REDIS_URL": settings.redis_url,
        "IDENTITY_TOKEN_PEPPER": "memory-test",
        "IDENTITY_STORAGE_URL": settings.storage_url,
        "IDENTITY_FILE_LINK_SECRET": settings.file_link_secret,
        "IDENTITY_EDGE_SECRET": "memory-test",
        "IDENTITY_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "IDENTITY_LINK_KEY_FILE": str(settings.link_key_file),
        "IDENTITY_LOGIN_ATTEMPTS_PER_IP": "1000",
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "identity", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            baseline = peak_rss_mib(proc.pid)
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/auth/login",
                        json={"email": f"nobody-{i}@example.com", "password": "Whatever-123"},
                    )
                    for i in range(24)
                )
            )
            assert {a.status_code for a in answers} <= {401, 503}
            grown = peak_rss_mib(proc.pid) - baseline
            # The process serves with Krika's HTTP limits, for direct callers too.
            huge = await client.get("/healthz", headers={"X-Big": "a" * 20_000})
            assert huge.status_code == 431
            assert huge.json()["error"] == "headers_too_large"
    finally:
        proc.terminate()
        await proc.wait()
    assert grown < 192 + 48, f"peak memory grew by {grown:.0f} MiB"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")

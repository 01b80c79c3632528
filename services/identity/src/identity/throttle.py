"""Login throttling and reset-mail limits in Redis.

A login attempt is *reserved* before the password is checked, in one Lua script that checks
every counter and increments them all atomically: thirty guesses sent at once are thirty
reservations against the limit, not thirty checks of a counter nobody has incremented yet.
A success gives its reservation back; a failure keeps it.

Three counters, so that failing attempts cannot be used to lock a user out of their account
from their own device (the weakness of a plain per-account lockout):
- account x IP (`login_attempts_per_account_ip`): the fast one; an attacker's guesses lock out
  the attacker's address only;
- account, across IPs (`login_attempts_per_account`): slower, catches guessing spread over
  many addresses - and does not apply to an IP that signed in to the account before (a
  "known" IP, remembered for `login_known_ip_ttl`), so the owner's usual client keeps working;
- IP, across accounts (`login_attempts_per_ip`): credential stuffing.
E-mail addresses never sit in Redis in clear: keys carry a hash of them.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from identity.config import Settings
from krika_common.errors import TooManyRequests


class LoginThrottled(TooManyRequests):
    code = "too_many_login_attempts"
    message = "Too many failed login attempts; try again later"


# KEYS: account x IP, account, IP, known marker. ARGV: window, and the three limits.
# Returns 0 (reserved) or the seconds until the blocking counter resets.
_RESERVE = """
local window = tonumber(ARGV[1])
local counters = {{KEYS[1], tonumber(ARGV[2])}, {KEYS[3], tonumber(ARGV[4])}}
if redis.call('EXISTS', KEYS[4]) == 0 then
  table.insert(counters, {KEYS[2], tonumber(ARGV[3])})
end
for _, counter in ipairs(counters) do
  local n = tonumber(redis.call('GET', counter[1]) or '0')
  if n >= counter[2] then
    local ttl = redis.call('TTL', counter[1])
    if ttl < 1 then ttl = window end
    return ttl
  end
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], window)
  end
end
return 0
"""

# KEYS: account x IP, account, IP, known marker. ARGV: known TTL; 0 = only give the
# reservation back, else a success: also forget this IP's failures and remember the IP.
_RELEASE = """
for i = 1, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
if tonumber(ARGV[1]) > 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
end
return 1
"""


def _account(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._window = settings.login_window
        self._limits = (
            settings.login_attempts_per_account_ip,
            settings.login_attempts_per_account,
            settings.login_attempts_per_ip,
        )
        self._known_ttl = settings.login_known_ip_ttl
        self._resets = settings.password_resets_per_account
        self._reset_window = settings.password_reset_window

    @staticmethod
    def _keys(email: str, ip: str) -> list[str]:
        account = _account(email)
        return [
            f"identity:login:acct-ip:{account}:{ip}",
            f"identity:login:acct:{account}",
            f"identity:login:ip:{ip}",
            f"identity:login:known:{account}:{ip}",
        ]

    async def reserve(self, email: str, ip: str) -> None:
        """Count this attempt before the password is checked; 429 when a limit is reached."""
        keys = self._keys(email, ip)
        wait = await self._redis.eval(_RESERVE, 4, *keys, self._window, *self._limits)
        if int(wait):
            raise LoginThrottled(retry_after=int(wait))

    async def succeeded(self, email: str, ip: str) -> None:
        """The password was right: give the reservation back and remember the IP."""
        await self._redis.eval(_RELEASE, 4, *self._keys(email, ip), self._known_ttl)

    async def abandoned(self, email: str, ip: str) -> None:
        """The password was never checked (e.g. hashing busy): give the reservation back."""
        await self._redis.eval(_RELEASE, 4, *self._keys(email, ip), 0)

    async def allow_reset_mail(self, email: str) -> bool:
        """Whether one more reset e-mail may go to this account in the current window."""
        key = f"identity:reset-mail:{_account(email)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._reset_window, nx=True)
            count, _ = await pipe.execute()
        return int(count) <= self._resets

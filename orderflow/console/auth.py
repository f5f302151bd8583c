"""Users, roles, sessions, CSRF tokens and the login rate limit of the console.

Passwords are stored as argon2id hashes (argon2-cffi); a session is a random token in an HttpOnly, Secure,
SameSite=Strict cookie, stored server side with its own CSRF token; every action is checked on the server
against the user's role (`ALLOWED`)."""

import hmac
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

ROLES: tuple[str, ...] = ("clerk", "customer_service", "reviewer", "supervisor", "admin")
# action -> the roles allowed to do it (admin may do everything)
ALLOWED: dict[str, frozenset[str]] = {
    "enter": frozenset({"clerk", "customer_service", "admin"}),
    "review": frozenset({"reviewer", "supervisor", "admin"}),
    "shortage": frozenset({"customer_service", "admin"}),
    "priority": frozenset({"supervisor", "admin"}),
    "cancel": frozenset({"customer_service", "supervisor", "admin"}),
}
DOING: dict[str, str] = {
    "enter": "enter orders",
    "review": "decide reviews",
    "shortage": "answer shortages",
    "priority": "approve priority reallocations",
    "cancel": "cancel orders",
}
NAME = re.compile(r"[a-z][a-z0-9._-]{1,39}")
MIN_PASSWORD = 10
SESSION_SECONDS = 12 * 3600
_hasher = PasswordHasher()


class UserError(ValueError):
    """A user command that cannot be carried out (the message says why)."""


def may(role: str, action: str) -> bool:
    """Whether `role` may do `action` (an unknown action is allowed to nobody)."""
    return role in ALLOWED.get(action, frozenset())


def hash_password(password: str) -> str:
    """The argon2id hash of a password of at least MIN_PASSWORD characters."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters, this one has {len(password)}")
    return _hasher.hash(password)


def password_matches(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class User:
    """A signed-in user."""

    name: str
    role: str


@dataclass(frozen=True)
class Session:
    """A session: its user and the CSRF token every form of the session carries."""

    token: str
    user: User
    csrf: str


class Accounts:
    """Users and sessions in the console's database (`users`, `sessions`)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.users = db["users"]
        self.sessions = db["sessions"]

    async def add(self, name: str, role: str, password: str) -> None:
        """Create a user; refuses a bad name, an unknown role, a short password or a name already taken."""
        if not NAME.fullmatch(name):
            raise UserError(f"user name {name!r}: 2-40 of a-z 0-9 . _ -, starting with a letter")
        if role not in ROLES:
            raise UserError(f"role {role!r} is unknown; one of {', '.join(ROLES)}")
        try:
            await self.users.insert_one(
                {"_id": name, "role": role, "hash": hash_password(password), "disabled": False, "created": time.time()}
            )
        except DuplicateKeyError:
            raise UserError(f"user {name!r} exists; `orderflow console user passwd` changes the password") from None

    async def passwd(self, name: str, password: str, role: str | None = None) -> None:
        """Set a user's password (and role, when given) and enable the user; ends the user's sessions."""
        update: dict[str, Any] = {"hash": hash_password(password), "disabled": False}
        if role is not None:
            if role not in ROLES:
                raise UserError(f"role {role!r} is unknown; one of {', '.join(ROLES)}")
            update["role"] = role
        if (await self.users.update_one({"_id": name}, {"$set": update})).matched_count == 0:
            raise UserError(f"no user {name!r}")
        await self.sessions.delete_many({"user": name})

    async def disable(self, name: str) -> None:
        """Disable a user and end the user's sessions."""
        if (await self.users.update_one({"_id": name}, {"$set": {"disabled": True}})).matched_count == 0:
            raise UserError(f"no user {name!r}")
        await self.sessions.delete_many({"user": name})

    async def list(self) -> list[dict[str, Any]]:
        """Every user with role and state (no hashes)."""
        return [d async for d in self.users.find({}, {"hash": 0}).sort("_id")]

    async def login(self, name: str, password: str) -> Session | None:
        """A new session when the name and password match an enabled user, else None."""
        doc = await self.users.find_one({"_id": name})
        if doc is None:
            _hasher.hash(password or "-")  # as slow as a real check, so timing does not tell names apart
            return None
        if doc.get("disabled") or not password_matches(doc["hash"], password):
            return None
        session = Session(secrets.token_urlsafe(32), User(name, doc["role"]), secrets.token_urlsafe(32))
        await self.sessions.insert_one(
            {"_id": session.token, "user": name, "csrf": session.csrf, "expires": time.time() + SESSION_SECONDS}
        )
        return session

    async def session(self, token: str) -> Session | None:
        """The live session of a cookie token (its user still enabled, role read afresh), else None."""
        if not token:
            return None
        doc = await self.sessions.find_one({"_id": token})
        if doc is None:
            return None
        if doc["expires"] < time.time():
            await self.sessions.delete_one({"_id": token})
            return None
        user = await self.users.find_one({"_id": doc["user"]})
        if user is None or user.get("disabled"):
            return None
        return Session(token, User(user["_id"], user["role"]), doc["csrf"])

    async def logout(self, token: str) -> None:
        """End a session."""
        await self.sessions.delete_one({"_id": token})


def csrf_ok(session: Session, given: str | None) -> bool:
    """Whether a form's CSRF token is the session's (constant-time comparison)."""
    return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())


class RateLimit:
    """At most `attempts` failed logins per user name and per client address within `window` seconds."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, who: str, now: float) -> deque[float]:
        times = self._failures.setdefault(who, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times

    def blocked(self, name: str, address: str, now: float | None = None) -> float:
        """Seconds until a login for this name or from this address may be tried again (0: now)."""
        now = time.time() if now is None else now
        waits = [
            times[0] + self.window - now
            for times in (self._recent(f"u:{name}", now), self._recent(f"a:{address}", now))
            if len(times) >= self.attempts
        ]
        return max(waits, default=0.0)

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        """Count a failed login."""
        now = time.time() if now is None else now
        for who in (f"u:{name}", f"a:{address}"):
            self._recent(who, now).append(now)

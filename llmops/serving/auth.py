"""API keys (stored as SHA-256 hashes) and HS256 JWT bearer tokens, with roles reader/admin.

Secrets come from the environment only:

- ``LLMOPS_API_KEYS="key_id:role:sha256hex,..."`` and/or ``LLMOPS_API_KEYS_FILE`` (a file with
  one ``key_id:role:sha256hex`` per line, ``#`` comments allowed). ``llmops serve --new-key
  alice:reader`` prints a fresh key and its entry; the server never sees a key in clear text
  except in the request that presents it.
- ``LLMOPS_JWT_SECRET``: HS256 secret; a token needs ``sub`` (the key id in the log) and
  ``role`` claims (``exp`` is checked when present).

Both arrive as ``Authorization: Bearer <secret>`` so OpenAI clients pass them as ``api_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROLES = ("reader", "admin")
ROLE_RANK = {"reader": 0, "admin": 1}
KEYS_ENV = "LLMOPS_API_KEYS"
KEYS_FILE_ENV = "LLMOPS_API_KEYS_FILE"
JWT_SECRET_ENV = "LLMOPS_JWT_SECRET"
KEY_PREFIX = "llm-"


class AuthError(Exception):
    """``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    method: str  # "api_key" | "jwt"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(key_id: str, role: str) -> tuple[str, str]:
    """A fresh random key and its ``LLMOPS_API_KEYS`` entry (``key_id:role:sha256``)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")
    if not key_id or ":" in key_id or "," in key_id:
        raise ValueError(f"key id {key_id!r}: must be non-empty without ':' or ','")
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    return key, f"{key_id}:{role}:{hash_key(key)}"


def parse_entries(text: str, source: str) -> dict[str, tuple[str, str]]:
    """``{sha256: (key_id, role)}`` from comma/newline separated entries; bad entries raise."""
    out: dict[str, tuple[str, str]] = {}
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"{source}: entry {entry[:40]!r} is not key_id:role:sha256hex")
        key_id, role, digest = (p.strip() for p in parts)
        if role not in ROLES:
            raise ValueError(f"{source}: key {key_id!r} has role {role!r}, expected {ROLES}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise ValueError(f"{source}: key {key_id!r} hash is not a 64-char sha256 hex digest")
        out[digest.lower()] = (key_id, role)
    return out


class Authenticator:
    """Checks a bearer secret against the hashed keys, else as a JWT."""

    def __init__(self, keys: Mapping[str, tuple[str, str]], jwt_secret: str | None) -> None:
        self.keys = dict(keys)
        self.jwt_secret = jwt_secret or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Authenticator:
        env = os.environ if environ is None else environ
        keys = parse_entries(env.get(KEYS_ENV, ""), KEYS_ENV)
        path = env.get(KEYS_FILE_ENV)
        if path:
            file = Path(path)
            if not file.is_file():
                raise ValueError(f"{KEYS_FILE_ENV}={path}: no such file")
            keys.update(parse_entries(file.read_text(), str(file)))
        return cls(keys, env.get(JWT_SECRET_ENV))

    @property
    def configured(self) -> bool:
        return bool(self.keys or self.jwt_secret)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing Authorization header (expected 'Bearer <key or JWT>')")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "Authorization must be 'Bearer <key or JWT>'")
        digest = hash_key(token)
        for stored, (key_id, role) in self.keys.items():
            if hmac.compare_digest(stored, digest):
                return Principal(key_id, role, "api_key")
        if token.count(".") == 2 and self.jwt_secret:
            return self._jwt(token)
        raise AuthError(401, "invalid API key or token")

    def _jwt(self, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], options={"require": ["sub", "role"]}
            )
        except jwt.PyJWTError as err:
            raise AuthError(401, f"invalid token: {err}") from err
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError(403, f"token role {role!r} is not one of {ROLES}")
        return Principal(str(claims["sub"]), role, "jwt")


def make_token(secret: str, sub: str, role: str, ttl_s: int | None = 3600) -> str:
    """An HS256 token for ``sub`` with ``role`` (tests, and `llmops serve --new-token`)."""
    import time

    import jwt

    claims: dict[str, object] = {"sub": sub, "role": role, "iat": int(time.time())}
    if ttl_s:
        claims["exp"] = int(time.time()) + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")

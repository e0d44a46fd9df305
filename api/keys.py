"""API keys: random tokens, stored hashed, with a scope and optionally a list of provinces.

A key is ``ioc_`` + 43 characters of URL-safe base64 (32 random bytes). Only its SHA-256 is
stored, in table ``api_keys`` of the alert store's database, SQLite or PostgreSQL (this module
opens its own connections through :mod:`alerts.database`; :mod:`alerts.store` knows nothing of
it). A plain, unsalted SHA-256 is the right tool for *random* 256-bit tokens: salting and slow
hashes (scrypt, argon2) exist to make guessing low-entropy passwords expensive, and nobody can
guess 2^256 tokens; a fast hash also lets every request be checked with one indexed lookup. The
bootstrap admin key from ``IOC_API_ADMIN_KEY`` is chosen by a person, so it must be at least 32
characters.

Scopes are ordered: ``read`` (dashboards, open data) < ``operate`` (provision devices, acknowledge,
rules, subscriptions) < ``admin`` (manage keys). A key with provinces only sees and acts on those.
The last active admin key cannot be revoked (:class:`LastAdminKey`): nobody could manage keys
any more, the bootstrap key's holder included, until a restart.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.database import Connection, Location, Row, ddl, open_database, parse_location
from alerts.errors import AlertsError, NotFound, StoreError
from contract.clock import now_ms

TOKEN_PREFIX = "ioc_"
TOKEN_BYTES = 32
BOOTSTRAP_ID = "key_bootstrap"
LAST_USED_EVERY_MS = 60_000
"""``last_used_at`` is written at most once a minute per key (a write per request would be waste)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
    provinces TEXT NOT NULL DEFAULT '[]',
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    last_used_at_ms BIGINT,
    revoked_at_ms BIGINT{rowid}
)
"""


class LastAdminKey(AlertsError):
    """Revoking this key would leave no active admin key (the API answers 409, ``ioc api keys revoke`` exits 2)."""


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


def new_token() -> str:
    """A fresh API key: ``ioc_`` + URL-safe base64 of 32 random bytes."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).decode().rstrip("=")


def hash_token(token: str) -> str:
    """The stored form of a key (hex SHA-256 of its UTF-8 text, surrounding spaces removed)."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def hint(token: str) -> str:
    """What a listing shows of a key so people can tell them apart: its first characters."""
    return token.strip()[:8] + "…"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never the token itself)."""

    id: str
    name: str
    """Who uses it: an operator's name or an integration; recorded when they acknowledge."""
    scope: Scope
    provinces: frozenset[str]
    """The only provinces the key may see and act on; empty = all."""
    hint: str
    created_at_ms: int
    created_by: str
    last_used_at_ms: int | None
    revoked_at_ms: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at_ms is None


def _key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scope=Scope(row["scope"]),
        provinces=frozenset(json.loads(row["provinces"])),
        hint=row["hint"],
        created_at_ms=row["created_at_ms"],
        created_by=row["created_by"],
        last_used_at_ms=row["last_used_at_ms"],
        revoked_at_ms=row["revoked_at_ms"],
    )


def _provinces(values: Iterable[str] | None) -> list[str]:
    return sorted({v.strip() for v in values or () if v.strip()})


class KeyStore:
    """API keys in the alert store's SQLite file or PostgreSQL database (thread-safe: a connection per thread)."""

    def __init__(self, location: Location | str) -> None:
        """Open the store at ``location`` (a file or a ``postgresql://`` URL) and create its table."""
        try:
            where = parse_location(location)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self._db = open_database(where, StoreError, name="the key store")
        try:
            with self._db.write() as conn:
                for statement in ddl(SCHEMA, self._db.dialect):
                    conn.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def create(
        self,
        name: str,
        scope: Scope | str,
        *,
        provinces: Iterable[str] | None = None,
        created_by: str = "",
        token: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; return it and its token (shown once, never stored)."""
        if not name.strip():
            raise ValueError("a key needs a name (who uses it)")
        scope = Scope(scope)
        areas = _provinces(provinces)
        if scope is Scope.ADMIN and areas:
            raise ValueError("an admin key manages every key, so it cannot be limited to provinces")
        token = token or new_token()
        key_id = "key_" + uuid.uuid4().hex[:16]
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, scope, provinces, hash, hint, created_at_ms, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name.strip(),
                    scope.value,
                    json.dumps(areas),
                    hash_token(token),
                    hint(token),
                    now_ms(),
                    created_by,
                ),
            )
            return self._get(conn, key_id), token

    def ensure_bootstrap(self, token: str) -> ApiKey:
        """Make ``token`` the bootstrap admin key (``IOC_API_ADMIN_KEY``), replacing an earlier one."""
        digest = hash_token(token)
        with self._db.write() as conn:
            conn.execute("DELETE FROM api_keys WHERE hash = ? AND id != ?", (digest, BOOTSTRAP_ID))
            conn.execute(
                "INSERT INTO api_keys (id, name, scope, provinces, hash, hint, created_at_ms, created_by)"
                " VALUES (?, 'bootstrap admin (IOC_API_ADMIN_KEY)', 'admin', '[]', ?, ?, ?, 'environment')"
                " ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, hint = excluded.hint, revoked_at_ms = NULL,"
                " scope = 'admin', provinces = '[]'",
                (BOOTSTRAP_ID, digest, hint(token), now_ms()),
            )
            return self._get(conn, BOOTSTRAP_ID)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key with this token, or None (marks it used)."""
        if not token.strip():
            return None
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT * FROM api_keys WHERE hash = ? AND revoked_at_ms IS NULL", (hash_token(token),)
            ).fetchone()
        if row is None:
            return None
        key = _key(row)
        now = now_ms()
        if key.last_used_at_ms is None or now - key.last_used_at_ms >= LAST_USED_EVERY_MS:
            with self._db.write() as conn:
                conn.execute("UPDATE api_keys SET last_used_at_ms = ? WHERE id = ?", (now, key.id))
        return key

    @staticmethod
    def _get(conn: Connection, key_id: str) -> ApiKey:
        row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return _key(row)

    def get(self, key_id: str) -> ApiKey:
        with self._db.read() as conn:
            return self._get(conn, key_id)

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Keys in the order they were created."""
        sql = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at_ms IS NULL")
        with self._db.read() as conn:
            return [_key(r) for r in conn.execute(sql + " ORDER BY created_at_ms, rowid")]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once (the row stays, for the record); never the last active admin key.

        Raises:
            NotFound: there is no such key.
            LastAdminKey: it is the only active admin key (writers run one at a time: two admins
                revoking each other's keys at once cannot both succeed).
        """
        with self._db.write() as conn:
            key = self._get(conn, key_id)
            if key.active and key.scope is Scope.ADMIN:
                others = conn.execute(
                    "SELECT COUNT(*) FROM api_keys WHERE scope = 'admin' AND revoked_at_ms IS NULL AND id != ?",
                    (key_id,),
                ).fetchone()[0]
                if not others:
                    raise LastAdminKey(
                        f"{key_id} is the last active admin key: revoking it would lock every admin out; "
                        "create another admin key first (ioc api keys create --scope admin)"
                    )
            conn.execute(
                "UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL", (now_ms(), key_id)
            )
            return self._get(conn, key_id)

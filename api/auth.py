"""Who is calling: an API key (``Authorization: Bearer …`` or ``X-API-Key: …``) → a :class:`Principal`.

No key, or an unknown or revoked one → 401; a key whose scope is too low → 403; a key limited to
some provinces naming another in a filter or a body → 403. A device, alert or subscription outside
the key's provinces is 404, word for word the answer for one that does not exist: nothing about it
(its province, even that it exists) reaches a key that may not see it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.deps import KeysDep
from api.errors import Forbidden, Unauthorized
from api.keys import ApiKey, Scope

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer ioc_…`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: `X-API-Key: ioc_…`")


@dataclass(frozen=True, slots=True)
class Principal:
    """The key behind a request."""

    key_id: str
    name: str
    scope: Scope
    provinces: frozenset[str]
    """Empty: every province."""

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.id, key.name, key.scope, key.provinces)

    @property
    def limited(self) -> bool:
        return bool(self.provinces)

    def may_see(self, province: str) -> bool:
        return not self.provinces or province in self.provinces

    def check_province(self, province: str) -> None:
        """403 unless the key covers ``province`` (one the client named itself, in a filter or a body)."""
        if not self.may_see(province):
            raise Forbidden(f"this key is limited to {', '.join(sorted(self.provinces))}", {"province": province})

    def may_manage(self, provinces: frozenset[str]) -> bool:
        """A subscription limited to ``provinces`` (empty: all) is this key's to see and change."""
        return not self.provinces or (bool(provinces) and provinces <= self.provinces)

    def check_provinces(self, provinces: Iterable[str]) -> None:
        for p in provinces:
            self.check_province(p)

    def require_all_areas(self, what: str) -> None:
        """403 for a key limited to some provinces (``what`` concerns every province)."""
        if self.provinces:
            raise Forbidden(
                f"{what} concerns every province; this key is limited to {', '.join(sorted(self.provinces))}"
            )

    def areas(self, province: str | None) -> list[str] | None:
        """The provinces a query may cover: the one asked for (checked), the key's, or None (all)."""
        if province is not None:
            self.check_province(province)
            return [province]
        return sorted(self.provinces) if self.provinces else None


def _token(creds: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    if creds is not None and creds.credentials.strip():
        return creds.credentials.strip()
    if header is not None and header.strip():
        return header.strip()
    return None


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency that admits keys with at least ``scope``."""

    def dependency(
        keys: KeysDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        header: Annotated[str | None, Security(api_key_header)],
    ) -> Principal:
        token = _token(creds, header)
        if token is None:
            raise Unauthorized("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        key = keys.authenticate(token)
        if key is None:
            raise Unauthorized("unknown or revoked API key")
        if not key.scope.allows(scope):
            raise Forbidden(f"this needs a key with scope {scope.value}; this key has {key.scope.value}")
        return Principal.of(key)

    dependency.__name__ = f"require_{scope.value}"
    return dependency


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Operator = Annotated[Principal, Depends(require(Scope.OPERATE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]

"""API keys (admin): create, list, revoke. A key's token is shown once, when it is created."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, Field

from api.auth import Admin
from api.deps import KeysDep
from api.errors import ERROR_RESPONSES, Conflict, ErrorBody, Invalid
from api.keys import ApiKey, LastAdminKey, Scope
from api.times import iso, iso_or_none

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=ERROR_RESPONSES)

Province = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]


KeyName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"\S", description="who uses it (recorded when they acknowledge)")
]


class AdminKeyIn(BaseModel):
    """An admin key: it manages every key, so it is never limited to provinces."""

    name: KeyName
    scope: Literal["admin"]
    provinces: list[Province] = Field([], max_length=0, description="always empty for an admin key")


class AreaKeyIn(BaseModel):
    """A read or operate key, optionally limited to provinces."""

    name: KeyName
    scope: Literal["read", "operate"] = Field(description="read (dashboards, open data), operate (acknowledge, …)")
    provinces: list[Province] = Field([], max_length=100, description="limit the key to these provinces (empty: all)")


KeyIn = Annotated[AdminKeyIn | AreaKeyIn, Field(discriminator="scope")]


class KeyOut(BaseModel):
    id: str
    name: str
    scope: Scope
    provinces: list[str]
    hint: str = Field(description="the first characters of the key")
    created_at: str
    created_by: str
    last_used_at: str | None
    revoked_at: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="the API key itself: shown only in this answer")


def key_out(k: ApiKey) -> KeyOut:
    return KeyOut(
        id=k.id,
        name=k.name,
        scope=k.scope,
        provinces=sorted(k.provinces),
        hint=k.hint,
        created_at=iso(k.created_at_ms),
        created_by=k.created_by,
        last_used_at=iso_or_none(k.last_used_at_ms),
        revoked_at=iso_or_none(k.revoked_at_ms),
    )


@router.post(
    "", response_model=KeyCreated, status_code=201, summary="Create an API key", responses={403: {"model": ErrorBody}}
)
def create_key(principal: Admin, keys: KeysDep, body: Annotated[KeyIn, Body()]) -> KeyCreated:
    """Create a key; the answer holds the key itself, the only time it is shown (only its hash is kept)."""
    try:
        key, token = keys.create(body.name, body.scope, provinces=body.provinces, created_by=principal.name)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return KeyCreated(**key_out(key).model_dump(), key=token)


@router.get("", response_model=list[KeyOut], summary="List API keys")
def list_keys(
    _: Admin, keys: KeysDep, include_revoked: Annotated[bool, Query(description="also revoked keys")] = False
) -> list[KeyOut]:
    """Every key (never the keys themselves, only their first characters)."""
    return [key_out(k) for k in keys.list_keys(include_revoked=include_revoked)]


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses={
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "the last active admin key: create another admin key first"},
    },
)
def revoke_key(key_id: Annotated[str, Path(max_length=64)], _: Admin, keys: KeysDep) -> Response:
    """Revoke a key at once (it stays listed with `include_revoked`); never the last active admin key (409)."""
    try:
        keys.revoke(key_id)
    except LastAdminKey as exc:
        raise Conflict(str(exc)) from None
    return Response(status_code=204)

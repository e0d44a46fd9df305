"""API keys: tokens, hashing, scopes, the key store, and what a key may see (provinces).

The key store's tests take ``alerts_location``: they run on a SQLite file and (marked integration)
on a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from alerts.errors import NotFound
from alerts.store import AlertStore
from api.auth import Principal
from api.errors import Forbidden
from api.keys import BOOTSTRAP_ID, TOKEN_PREFIX, KeyStore, Scope, hash_token, new_token
from tests.stores import dump, tables


def test_tokens_are_random_urlsafe_and_long() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for t in tokens:
        assert t.startswith(TOKEN_PREFIX)
        assert len(t) == len(TOKEN_PREFIX) + 43  # 32 bytes, base64 without padding
        assert set(t[len(TOKEN_PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_is_sha256_of_the_stripped_token() -> None:
    assert hash_token("  ioc_abc \n") == hashlib.sha256(b"ioc_abc").hexdigest()
    assert hash_token("ioc_abc") != hash_token("ioc_abd")


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("read", "read", True),
        ("read", "operate", False),
        ("read", "admin", False),
        ("operate", "read", True),
        ("operate", "operate", True),
        ("operate", "admin", False),
        ("admin", "read", True),
        ("admin", "operate", True),
        ("admin", "admin", True),
    ],
)
def test_scopes_are_ordered(have: str, need: str, ok: bool) -> None:
    assert Scope(have).allows(Scope(need)) is ok


def test_store_keeps_only_the_hash(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    key, token = keys.create("lan", "operate", provinces=["ben_tre", " ben_tre ", ""])
    keys.close()
    assert key.provinces == frozenset({"ben_tre"})
    rows = dump(alerts_location, "api_keys")
    assert token not in rows
    assert hash_token(token) in rows


def test_authenticate_revoke_and_list(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    key, token = keys.create("ops", Scope.READ)
    found = keys.authenticate(token)
    assert found is not None
    assert found.id == key.id
    assert found.scope is Scope.READ
    assert found.last_used_at_ms is None  # the row read before the update
    assert keys.get(key.id).last_used_at_ms is not None
    assert keys.authenticate(token + "x") is None
    assert keys.authenticate("   ") is None
    keys.revoke(key.id)
    assert keys.authenticate(token) is None
    assert keys.list_keys() == []
    assert [k.id for k in keys.list_keys(include_revoked=True)] == [key.id]
    with pytest.raises(NotFound):
        keys.revoke("key_missing")


def test_keys_are_listed_in_the_order_they_were_created(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    made = [keys.create(f"key {i}", "read")[0].id for i in range(12)]  # ids are random: not their order
    assert [k.id for k in keys.list_keys()] == made
    keys.close()


def test_admin_keys_cannot_be_limited_and_names_are_needed(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    with pytest.raises(ValueError, match="admin"):
        keys.create("boss", "admin", provinces=["ben_tre"])
    with pytest.raises(ValueError, match="name"):
        keys.create("  ", "read")
    with pytest.raises(ValueError, match="root"):
        keys.create("x", "root")


def test_bootstrap_key_is_replaced_when_the_variable_changes(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    first, second = "a" * 40, "b" * 40
    keys.ensure_bootstrap(first)
    keys.ensure_bootstrap(first)  # a restart with the same key
    assert [k.id for k in keys.list_keys()] == [BOOTSTRAP_ID]
    assert keys.authenticate(first) is not None
    keys.create("another admin", "admin")  # never the last admin key
    keys.revoke(BOOTSTRAP_ID)
    keys.ensure_bootstrap(second)
    assert keys.authenticate(first) is None
    key = keys.authenticate(second)
    assert key is not None
    assert key.scope is Scope.ADMIN
    assert key.active


def test_keys_share_the_alert_store_database(alerts_location: Path | str) -> None:
    store = AlertStore(alerts_location)
    keys = KeyStore(alerts_location)
    keys.create("x", "read")
    assert store.list() == []
    assert {"alerts", "subscriptions", "api_keys"} <= tables(alerts_location)
    store.close()
    keys.close()


def test_principal_areas() -> None:
    everywhere = Principal("k1", "boss", Scope.OPERATE, frozenset())
    bt = Principal("k2", "lan", Scope.OPERATE, frozenset({"ben_tre"}))
    assert everywhere.areas(None) is None
    assert everywhere.areas("ca_mau") == ["ca_mau"]
    assert bt.areas(None) == ["ben_tre"]
    assert bt.areas("ben_tre") == ["ben_tre"]
    with pytest.raises(Forbidden):
        bt.areas("ca_mau")
    with pytest.raises(Forbidden):
        bt.require_all_areas("reloading")
    everywhere.require_all_areas("reloading")
    assert bt.may_see("ben_tre")
    assert not bt.may_see("ca_mau")

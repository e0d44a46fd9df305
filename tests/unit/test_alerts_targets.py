"""Outbound targets: no private, loopback or link-local addresses unless the allow-list says so."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alerts.config import WebhookSettings
from alerts.errors import TargetRefused
from alerts.targets import TargetPolicy


def resolver(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise TargetRefused(f"cannot resolve {host!r}", url=host)
        return table[host]

    return resolve


DNS = resolver(
    {
        "hooks.example.org": ["93.184.215.14"],
        "inside.example.org": ["10.1.2.3"],
        "mixed.example.org": ["93.184.215.14", "192.168.1.10"],
        "v6.example.org": ["2606:4700::6810:84e5"],
        "v6-inside.example.org": ["fd12:3456::1"],
        "sms-gateway.lan": ["192.168.50.2"],
        "zalo.coop.lan": ["10.9.9.9"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://10.255.255.255/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.1/hook",
        "http://192.168.1.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://127.8.9.10/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://[2002:a00:1::1]/hook",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        TargetPolicy.parse(resolver=DNS).check_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://inside.example.org/hook", "https://mixed.example.org/hook", "https://v6-inside.example.org/x"],
)
def test_a_host_resolving_to_a_private_address_is_refused(url: str) -> None:
    """Every address counts: one private address among public ones is enough to refuse."""
    with pytest.raises(TargetRefused, match="resolves to"):
        TargetPolicy.parse(resolver=DNS).check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.org/alerts",
        "http://93.184.215.14:8080/x",
        "https://v6.example.org/x",
        "https://[2606:4700::6810:84e5]/x",
        "http://172.32.0.1/x",
    ],
)
def test_public_targets_are_allowed(url: str) -> None:
    TargetPolicy.parse(resolver=DNS).check_url(url)


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.org/x", "file:///etc/passwd", "hooks.example.org/x", "http:///x", "http://h:99999/"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        TargetPolicy.parse(resolver=DNS).check_url(url)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(TargetRefused, match="resolve"):
        TargetPolicy.parse(resolver=DNS).check_url("https://nowhere.example.org/x")


def test_allow_list_cidr_opens_only_that_network() -> None:
    policy = TargetPolicy.parse(["127.0.0.0/8", "10.1.0.0/16"], resolver=DNS)
    policy.check_url("http://127.0.0.1:8080/hook")
    policy.check_url("http://inside.example.org/hook")  # 10.1.2.3
    policy.check_url("http://[::ffff:127.0.0.1]/hook")
    with pytest.raises(TargetRefused):
        policy.check_url("http://10.2.0.1/hook")
    with pytest.raises(TargetRefused):
        policy.check_url("http://[::1]/hook")
    with pytest.raises(TargetRefused):
        policy.check_url("http://mixed.example.org/hook")


def test_allow_list_single_address_and_ipv6() -> None:
    policy = TargetPolicy.parse(["192.168.1.10", "::1"], resolver=DNS)
    policy.check_url("http://192.168.1.10/x")
    policy.check_url("http://[::1]/x")
    with pytest.raises(TargetRefused):
        policy.check_url("http://192.168.1.11/x")


def test_allow_list_host_names_and_wildcards() -> None:
    policy = TargetPolicy.parse(["sms-gateway.lan", "*.coop.lan"], resolver=DNS)
    policy.check_url("http://sms-gateway.lan/send")
    policy.check_url("http://zalo.coop.lan/send")
    policy.check_url("http://SMS-Gateway.LAN./send")
    with pytest.raises(TargetRefused):
        policy.check_url("http://inside.example.org/hook")


def test_allow_private_turns_the_check_off() -> None:
    policy = TargetPolicy.parse(allow_private=True, resolver=DNS)
    for url in ("http://127.0.0.1/x", "http://[::1]/x", "http://169.254.169.254/x", "http://inside.example.org/"):
        policy.check_url(url)


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "http://x/"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="allow-list entry"):
        TargetPolicy.parse([entry])


def test_settings_parse_the_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", "127.0.0.0/8, sms-gateway.lan")
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_PRIVATE", "false")
    settings = WebhookSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.webhook_allow_hosts == ["127.0.0.0/8", "sms-gateway.lan"]
    policy = settings.target_policy(resolver=DNS)
    policy.check_url("http://127.0.0.1:9/x")
    policy.check_url("http://sms-gateway.lan/x")
    with pytest.raises(TargetRefused):
        policy.check_url("http://10.0.0.1/x")


def test_settings_accept_a_json_list_and_refuse_bad_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", '["10.0.0.0/8"]')
    assert WebhookSettings(_env_file=None).webhook_allow_hosts == ["10.0.0.0/8"]  # type: ignore[call-arg]
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", "10.0.0.0/99")
    with pytest.raises(ValueError, match="allow-list entry"):
        WebhookSettings(_env_file=None)  # type: ignore[call-arg]


def test_settings_default_refuses_private() -> None:
    settings = WebhookSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.webhook_allow_private is False
    assert settings.webhook_allow_hosts == []
    with pytest.raises(TargetRefused):
        settings.target_policy().check_url("http://127.0.0.1/x")

"""One webhook delivery: sign the body, check the target, POST it, classify the answer.

The sender (:mod:`alerts.sender`) delivers the outbox with it, and the API's test route sends its
``test.ping`` with it, so both sign, refuse targets, cap error bodies and word errors alike.
Nothing here raises for a failed delivery: every outcome is an :class:`~alerts.outbox.Outcome`.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from alerts import signing
from alerts.errors import SignatureError, TargetRefused
from alerts.outbox import Outcome, classify, failure
from alerts.targets import GuardedTransport, TargetPolicy

USER_AGENT = "mekong-ioc-webhooks/0.1"
ERROR_BODY_CAP = 1024
"""How much of a non-2xx answer is read (it goes into the delivery log, shortened)."""


def webhook_client(
    policy: TargetPolicy, timeout_s: float, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An HTTP client for webhooks: the guarded transport (unless given), no redirects, no proxy from the env."""
    return httpx.AsyncClient(
        transport=transport or GuardedTransport(policy),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


async def _read_capped(response: httpx.Response, cap: int) -> str:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= cap:
            break
    return data[:cap].decode("utf-8", "replace")


async def post_webhook(
    client: httpx.AsyncClient,
    policy: TargetPolicy,
    *,
    url: str,
    secret: str,
    webhook_id: str,
    body: str,
    timeout_s: float,
) -> Outcome:
    """Sign ``body`` (Standard Webhooks, timestamp now), check ``url`` against ``policy``, POST it.

    Args:
        client: from :func:`webhook_client`.
        policy: where webhooks may go; checked again here because DNS may have changed.
        url: the subscriber's URL.
        secret: the subscriber's ``whsec_…`` secret.
        webhook_id: the ``webhook-id`` header, the same on every attempt of one event.
        body: the JSON text to post.
        timeout_s: the client's timeout, for the error message.
    """
    try:
        headers = signing.headers(secret, webhook_id, int(time.time()), body)
    except SignatureError as exc:
        return failure(f"cannot sign: {exc}")
    headers["content-type"] = "application/json"
    try:
        await asyncio.to_thread(policy.check_url, url)
        async with client.stream("POST", url, content=body.encode(), headers=headers) as response:
            text = await _read_capped(response, ERROR_BODY_CAP) if response.status_code >= 300 else ""
            return classify(response.status_code, response.headers, text)
    except TargetRefused as exc:
        return failure(f"target refused: {exc}")
    except httpx.TimeoutException:
        return failure(f"timeout after {timeout_s:g}s")
    except httpx.HTTPError as exc:
        return failure(f"{type(exc).__name__}: {exc}".rstrip(": "))
    except OSError as exc:
        return failure(f"{type(exc).__name__}: {exc}")

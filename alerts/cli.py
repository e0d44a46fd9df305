"""``ioc subscriptions …``: manage webhook subscribers, their dead letters and replays.

A typer sub-app; the ``ioc`` command mounts it (``app.add_typer(alerts.cli.app)``). The database
is ``--db`` or ``IOC_ALERTS_DB`` (default ``var/alerts.db``); the target policy comes from
``IOC_WEBHOOK_ALLOW_PRIVATE`` and ``IOC_WEBHOOK_ALLOW_HOSTS``. The other options describe one
subscription, or filter a listing: they are not settings and have no variable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import typer

from alerts.config import WebhookSettings
from alerts.errors import AlertsError, InvalidSubscription
from alerts.notify import DEFAULT_GROUP_INTERVAL_S, DEFAULT_GROUP_WAIT_S, Pacing
from alerts.outbox import DeadLetter, Status
from alerts.store import AlertStore, iso_ms
from alerts.subscriptions import MAX_RADIUS_KM, Near, Subscription
from ioc.errors import Commands, UserError, blame, load_settings

app = typer.Typer(
    cls=Commands,
    name="subscriptions",
    no_args_is_help=True,
    add_completion=False,
    help="Webhook subscriptions: who is told about alerts, where, in which language.",
)

Opt = typer.Option
Db = Annotated[str | None, Opt("--db", help="alert store, a SQLite file or postgresql://… [IOC_ALERTS_DB]")]
AsJson = Annotated[bool, Opt("--json", help="print JSON")]
Names = Annotated[list[str] | None, Opt(help="repeatable; any of these (empty = all)")]


def _settings(db: str | None) -> WebhookSettings:
    return load_settings(WebhookSettings, flags={"alerts_db": "--db"}, alerts_db=db)


@contextmanager
def _store(db: str | None) -> Iterator[AlertStore]:
    """The store; its errors in the block (not found, invalid) print as one line at the ``ioc`` boundary."""
    settings = _settings(db)
    with blame(f"--db (IOC_ALERTS_DB) {settings.alerts_db}", AlertsError):
        store = AlertStore(settings.alerts_db, policy=settings.target_policy())
    with closing(store):
        yield store


def parse_near(near: str | None, radius_km: float | None) -> Near | None:
    """``--near LAT,LON`` and ``--radius KM`` → a circle; both or neither (:class:`UserError` otherwise)."""
    if near is None and radius_km is None:
        return None
    if near is None or radius_km is None:
        raise UserError("--near LAT,LON and --radius KM go together: give both, or neither")
    lat_text, sep, lon_text = near.partition(",")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        lat = lon = math.nan
    if not sep or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UserError(f"--near {near!r}: give LAT,LON in degrees, e.g. --near 10.04,106.60")
    if not 0 < radius_km <= MAX_RADIUS_KM:
        raise UserError(f"--radius {radius_km:g}: give km, more than 0 and at most {MAX_RADIUS_KM:g}")
    return Near.make(lat, lon, radius_km)


def parse_pacing(*, group_wait: int, group_interval: int, quiet: str | None, max_per_hour: int | None) -> Pacing:
    """The pacing flags → :class:`Pacing`; a bad value is a :class:`UserError` naming its flag."""
    given: tuple[tuple[str, dict[str, Any]], ...] = (
        ("--group-wait", {"group_wait_s": group_wait}),
        ("--group-interval", {"group_interval_s": group_interval}),
        ("--quiet", {"quiet": quiet}),
        ("--max-per-hour", {"max_per_hour": max_per_hour}),
    )
    for flag, value in given:
        with blame(flag, InvalidSubscription):
            Pacing.make(**value)
    return Pacing.make(**{k: v for _, one in given for k, v in one.items()})


def _mask(secret: str) -> str:
    return secret[:6] + "…" + secret[-4:]


def _sub_dict(sub: Subscription, *, secret: bool) -> dict[str, Any]:
    f = sub.filters
    return {
        "id": sub.id,
        "url": sub.url,
        "secret": sub.secret if secret else _mask(sub.secret),
        "language": sub.language,
        "enabled": sub.enabled,
        "disabled_reason": sub.disabled_reason,
        "description": sub.description,
        "filters": {
            "provinces": sorted(f.provinces),
            "districts": sorted(f.districts),
            "devices": sorted(f.devices),
            "kinds": sorted(f.kinds),
            "rule_ids": sorted(f.rule_ids),
            "crops": sorted(f.crops),
            "near": None if f.near is None else asdict(f.near),
            "min_severity": f.min_severity.label,
        },
        "template": sub.template,
        "pacing": {
            "group_wait_s": sub.pacing.group_wait_s,
            "group_interval_s": sub.pacing.group_interval_s,
            "quiet_hours": None if sub.pacing.quiet is None else str(sub.pacing.quiet),
            "max_per_hour": sub.pacing.max_per_hour,
        },
        "created_at": iso_ms(sub.created_at_ms),
    }


def _dead_dict(d: DeadLetter) -> dict[str, Any]:
    out = asdict(d)
    out["dead_at"] = iso_ms(d.dead_at_ms)
    out["replayed_at"] = iso_ms(d.replayed_at_ms) if d.replayed_at_ms is not None else None
    return out


@app.command()
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL the alerts are POSTed to")],
    secret: Annotated[str | None, Opt(help="whsec_<base64> (default: generate one)")] = None,
    province: Names = None,
    district: Names = None,
    device: Names = None,
    kind: Names = None,
    rule: Names = None,
    crop: Annotated[list[str] | None, Opt(help="repeatable; the device's crop, e.g. durian, rice, shrimp")] = None,
    near: Annotated[
        str | None, Opt(metavar="LAT,LON", help="only devices near this point (WGS84 degrees); with --radius")
    ] = None,
    radius: Annotated[float | None, Opt(metavar="KM", help="how near, in km (with --near)")] = None,
    min_severity: Annotated[str, Opt(help="info, warning or critical")] = "info",
    language: Annotated[str, Opt(help="vi or en: the language of the message field")] = "vi",
    description: Annotated[str, Opt(help="who this is, e.g. 'Ba Tri shrimp co-op Zalo gateway'")] = "",
    template: Annotated[
        str | None,
        Opt(help="a template id its gateway sends (Zalo ZNS, SMS brandname): webhooks add it and its params"),
    ] = None,
    group_wait: Annotated[
        int, Opt(metavar="S", help="alerts of one family and district starting within S seconds go as one message")
    ] = DEFAULT_GROUP_WAIT_S,
    group_interval: Annotated[
        int, Opt(metavar="S", help="updates of a group still alerting at most every S seconds (critical: no wait)")
    ] = DEFAULT_GROUP_INTERVAL_S,
    quiet: Annotated[
        str | None,
        Opt(metavar="HH:MM-HH:MM", help="local quiet hours, e.g. 21:00-05:30: only critical alerts, then a digest"),
    ] = None,
    max_per_hour: Annotated[
        int | None, Opt(metavar="N", help="at most N messages an hour (critical always go); the rest as one summary")
    ] = None,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """Add a webhook subscriber (the URL is checked against the target policy)."""
    circle = parse_near(near, radius)
    pacing = parse_pacing(group_wait=group_wait, group_interval=group_interval, quiet=quiet, max_per_hour=max_per_hour)
    with _store(db) as store:
        sub = store.add_subscription(
            url,
            secret,
            provinces=province,
            districts=district,
            devices=device,
            kinds=kind,
            rule_ids=rule,
            min_severity=min_severity,
            language=language,
            description=description,
            crops=crop,
            near=circle,
            template=template,
            pacing=pacing,
        )
    if as_json:
        typer.echo(json.dumps(_sub_dict(sub, secret=True), ensure_ascii=False))
        return
    typer.echo(f"added {sub.id} → {sub.url} ({sub.language}; {sub.filters.describe()}; {sub.pacing.describe()})")
    typer.echo(f"secret: {sub.secret}")


@app.command("list")
def list_(db: Db = None, as_json: AsJson = False) -> None:
    """List subscribers with their queue (pending), notices held for a later message (waiting) and dead letters."""
    with _store(db) as store:
        subs = store.list_subscriptions()
        pending = {s.id: store.pending_count(s.id) for s in subs}
        waiting = {s.id: store.waiting_count(s.id) for s in subs}
        dead = {s.id: len(store.dead_letters(subscription_id=s.id, limit=None)) for s in subs}
    if as_json:
        rows = [
            {**_sub_dict(s, secret=False), "pending": pending[s.id], "waiting": waiting[s.id],
             "dead_letters": dead[s.id]}
            for s in subs
        ]  # fmt: skip
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not subs:
        typer.echo("no subscriptions (add one with: ioc subscriptions add URL)")
        return
    for s in subs:
        state = "enabled" if s.enabled else f"DISABLED ({s.disabled_reason})"
        counts = f"pending={pending[s.id]} waiting={waiting[s.id]} dead={dead[s.id]}"
        typer.echo(f"{s.id}  {state}  {s.language}  {counts}  {s.url}")
        who = f" — {s.description}" if s.description else ""
        typer.echo(f"    {s.filters.describe()}; {s.pacing.describe()}{who}")


@app.command()
def remove(sub_id: Annotated[str, typer.Argument(help="subscription id (sub_…)")], db: Db = None) -> None:
    """Remove a subscriber with its queue, delivery log and dead letters."""
    with _store(db) as store:
        store.remove_subscription(sub_id)
    typer.echo(f"removed {sub_id}")


@app.command()
def enable(sub_id: Annotated[str, typer.Argument(help="subscription id")], db: Db = None) -> None:
    """Enable a subscriber again (e.g. after its endpoint answered 410 Gone)."""
    with _store(db) as store:
        store.update_subscription(sub_id, enabled=True)
    typer.echo(f"enabled {sub_id}")


@app.command()
def disable(sub_id: Annotated[str, typer.Argument(help="subscription id")], db: Db = None) -> None:
    """Stop queueing alerts for a subscriber (rows already queued wait)."""
    with _store(db) as store:
        store.update_subscription(sub_id, enabled=False)
    typer.echo(f"disabled {sub_id}")


@app.command("dead-letters")
def dead_letters(
    subscription: Annotated[str | None, Opt(help="only this subscriber")] = None,
    include_replayed: Annotated[bool, Opt("--all", help="include dead letters already replayed")] = False,
    limit: Annotated[int, Opt(help="at most this many")] = 100,
    db: Db = None,
    as_json: AsJson = False,
) -> None:
    """List events a subscriber never took (retries exhausted, or 410 Gone)."""
    with _store(db) as store:
        rows = store.dead_letters(subscription_id=subscription, include_replayed=include_replayed, limit=limit)
    if as_json:
        typer.echo(json.dumps([_dead_dict(d) for d in rows], ensure_ascii=False))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    for d in rows:
        replayed = f"  replayed {iso_ms(d.replayed_at_ms)}" if d.replayed_at_ms is not None else ""
        typer.echo(
            f"{d.id}  {d.subscription_id}  {d.event_type}  {d.event_id}  attempts={d.attempts}"
            f"  dead {iso_ms(d.dead_at_ms)}  {d.last_error or ''}{replayed}"
        )


@app.command()
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="dead-letter ids")] = None,
    subscription: Annotated[str | None, Opt(help="every dead letter of this subscriber")] = None,
    all_: Annotated[bool, Opt("--all", help="every dead letter")] = False,
    db: Db = None,
) -> None:
    """Queue dead letters again: same webhook-id, fresh retries. The running sender picks them up."""
    if not ids and subscription is None and not all_:
        typer.echo("error: name dead-letter ids, --subscription ID or --all", err=True)
        raise typer.Exit(2)
    with _store(db) as store:
        count = store.replay(ids or None, subscription_id=subscription)
        waiting = [
            s.id
            for s in store.list_subscriptions(enabled=False)
            if store.outbox(subscription_id=s.id, status=Status.PENDING, limit=1)
        ]
    typer.echo(f"replayed {count} dead letter{'s' if count != 1 else ''}")
    for sub_id in waiting:
        typer.echo(f"note: {sub_id} is disabled; its queue waits for `ioc subscriptions enable {sub_id}`", err=True)

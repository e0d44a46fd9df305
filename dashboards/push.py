"""Upload the dashboards to a running Grafana through its HTTP API (grafana-client), idempotently.

The folder "Mekong IOC" (uid :data:`FOLDER_UID`) is created when missing; every dashboard is saved
into it with ``overwrite`` and its stable uid, so pushing again replaces it (a new version) and
never duplicates it. A Grafana that provisions these dashboards from files (the compose stack)
refuses API saves of them: push is for a Grafana without the file provider.

Errors: everything grafana-client or its HTTP library raises becomes a :class:`PushError` whose
message says what to check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import requests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

from dashboards.queries import DATASOURCE_UID

FOLDER_UID: Final = "mekong-ioc"
FOLDER_TITLE: Final = "Mekong IOC"
MESSAGE: Final = "ioc grafana push (dashboards as code: grafana/dashboards/)"


class PushError(RuntimeError):
    """Grafana could not be reached or refused a request; the message says what to check."""


@dataclass
class PushReport:
    folder_created: bool = False
    datasource_found: bool = True
    saved: list[tuple[str, str]] = field(default_factory=list)
    """(uid, url) of every dashboard saved."""


ApiFactory = Callable[[str, str, float], Any]


def _api(url: str, token: str, timeout: float) -> Any:
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def _explain(exc: Exception, url: str, doing: str) -> PushError:
    if isinstance(exc, GrafanaUnauthorizedError):
        return PushError(f"{doing}: Grafana at {url} refused the token (401): use a service-account token")
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return PushError(f"{doing}: the token may not do this (403): give its service account the Editor role")
    if isinstance(exc, GrafanaException):
        detail = str(exc.message)
        if "provisioned" in detail.lower():
            detail += " (this Grafana provisions the dashboards from files; push to one that does not)"
        return PushError(f"{doing}: Grafana at {url} answered {exc.status_code or 'an error'}: {detail}")
    return PushError(f"{doing}: cannot reach Grafana at {url}: {exc}")


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def push(
    url: str,
    token: str,
    dashboards: Sequence[dict[str, Any]],
    *,
    timeout: float = 10.0,
    api_factory: ApiFactory = _api,
) -> PushReport:
    """Create the folder if missing and save every dashboard in it (overwrite, stable uids)."""
    report = PushReport()
    api = api_factory(url.rstrip("/"), token, timeout)
    doing = "looking up the folder"
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaException as exc:
            if not _missing(exc):
                raise
            doing = "creating the folder"
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            report.folder_created = True
        doing = "looking up the data source"
        try:
            api.datasource.get_datasource_by_uid(DATASOURCE_UID)
        except GrafanaException as exc:
            if not _missing(exc):
                raise
            report.datasource_found = False
        for model in dashboards:
            doing = f"saving dashboard {model['uid']}"
            answer = api.dashboard.update_dashboard(
                {"dashboard": {**model, "id": None}, "folderUid": FOLDER_UID, "overwrite": True, "message": MESSAGE}
            )
            report.saved.append((str(model["uid"]), str((answer or {}).get("url", ""))))
    except (GrafanaException, requests.RequestException) as exc:
        raise _explain(exc, url, doing) from exc
    return report

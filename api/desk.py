"""The operators' alert desk: its static page at ``/``, its files at ``/desk/…``, its settings at ``/v1/desk/config``.

The page holds no data and needs no key to load; every call it makes for data sends the key the
operator entered. Files are served from the ``desk`` folder beside this module (package data):
only regular files of the known types, never a folder listing, never a path outside the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.errors import NotFoundError
from api.routes.stream import STREAM_PATH

DESK_DIR: Final = Path(__file__).parent / "desk"

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
"""What the desk folder may serve, by suffix (anything else is 404)."""

router = APIRouter(include_in_schema=False)


def tile_origin(tile_url: str) -> str:
    """The origin the page loads tiles from: ``{s}`` (a subdomain) is ``a``, as the page's ``tileUrl``
    (api/desk/lib.js) makes it; the settings refuse any other placeholder in the host."""
    parts = urlsplit(tile_url.replace("{s}", "a", 1))
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(tile_url: str | None) -> str:
    """Only our own scripts, styles (no inline ones) and calls; images also from the tile server, when one is set."""
    tiles = f" {tile_origin(tile_url)}" if tile_url else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{tiles}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def desk_file(path: str, root: Path = DESK_DIR) -> Path:
    """The file of the desk folder at ``path`` (relative), or :class:`NotFoundError`: a folder, a dot
    file, an unknown type, or a path leading outside the folder (``..``, absolute, a link out)."""
    missing = NotFoundError(f"no desk file {path!r}")
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        raise missing
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise missing
    base = root.resolve()
    try:
        target = (base / path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise missing from None
    if not target.is_relative_to(base) or not target.is_file() or target.suffix not in CONTENT_TYPES:
        raise missing
    return target


def _serve(request: Request, path: str) -> FileResponse:
    target = desk_file(path)
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if target.suffix == ".html":
        headers["Content-Security-Policy"] = content_security_policy(request.app.state.settings.api_desk_tile_url)
    return FileResponse(target, media_type=CONTENT_TYPES[target.suffix], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request) -> FileResponse:
    """The desk's page (no data in it: no key needed)."""
    return _serve(request, "index.html")


@router.api_route("/desk/{path:path}", methods=["GET", "HEAD"])
def desk_files(request: Request, path: Annotated[str, PathParam(max_length=200)]) -> FileResponse:
    """A file of the desk (scripts, styles, images)."""
    return _serve(request, path)


class DeskConfig(BaseModel):
    tile_url: str | None = Field(description="base-map tiles, {z}/{x}/{y} (null: no tiles, the map works offline)")
    stream_path: str = Field(description="the live alert stream (Server-Sent Events)")
    version: str


@router.get("/v1/desk/config", response_model=DeskConfig)
def desk_config(request: Request) -> DeskConfig:
    """What the page needs before it has a key: the tile URL and where the live stream is."""
    return DeskConfig(
        tile_url=request.app.state.settings.api_desk_tile_url, stream_path=STREAM_PATH, version=request.app.version
    )

"""The rule pack: list it, validate a new one, reload it from disk, backtest over stored readings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from api.auth import Operator, Reader
from api.deps import InfluxDep, RegistryDep, RulesDep, SettingsDep
from api.errors import ERROR_RESPONSES, ErrorBody, Invalid
from api.services import LoadedPack
from api.times import TIME_HELP, TIME_PATTERN, iso, parse_time_ms
from contract.clock import now_ms
from contract.fleet import Fleet
from ingest.backtest import backtest as run
from rules.errors import PackError
from rules.pack import Pack, parse_pack

router = APIRouter(prefix="/v1/rules", tags=["rules"], responses=ERROR_RESPONSES)

YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a rule pack, YAML (as in rules/packs/mekong.yaml)",
        "content": {"application/yaml": {"schema": {"type": "string"}}},
    }
}
INVALID_PACK: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "the pack is invalid: `detail` names the rule and the problem"}
}
BACKTEST_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "the posted pack is invalid (`detail` names the rule), `to` is not after `from`, or the range "
        "is over IOC_API_BACKTEST_MAX_HOURS",
    }
}


class RuleOut(BaseModel):
    id: str
    kind: str
    severity: Literal["info", "warning", "critical"]
    condition: str = Field(description="condition type: threshold, range, window, change, surge, …")
    field: str | None
    audience: Literal["farmers", "operators"]
    enabled: bool
    unit: str
    select: dict[str, list[str]]
    message_vi: str
    message_en: str
    source: str


class PackOut(BaseModel):
    name: str
    description: str
    source: str
    loaded_at: str
    count: int
    enabled: int
    rules: list[RuleOut]


class Validated(BaseModel):
    valid: Literal[True]
    name: str
    count: int
    enabled: int


class BacktestIn(BaseModel):
    from_: str = Field("-24h", alias="from", pattern=TIME_PATTERN, description=f"start: {TIME_HELP}")
    to: str = Field("now", pattern=TIME_PATTERN, description="end (exclusive), as `from`")
    pack: str | None = Field(None, description="a rule pack, YAML, to try instead of the loaded one")

    model_config = {"populate_by_name": True}


class TopDevice(BaseModel):
    device_id: str
    firings: int


class RuleResult(BaseModel):
    firings: int
    devices: int
    top_devices: list[TopDevice]


class BacktestOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    from_ms: int
    to_ms: int
    pack: str
    devices: int = Field(description="devices the backtest covered (those the key may see)")
    readings: int
    firings: int
    rules: dict[str, RuleResult]

    model_config = {"populate_by_name": True}


def pack_out(loaded: LoadedPack) -> PackOut:
    pack = loaded.pack
    rules = [
        RuleOut(
            id=r.id,
            kind=r.kind,
            severity=r.severity.label,
            condition=r.condition.type,
            field=getattr(r.condition, "field", None),
            audience=r.audience,
            enabled=r.enabled,
            unit=r.unit,
            select={k: list(v) for k, v in r.select.model_dump().items() if v},
            message_vi=r.message.vi,
            message_en=r.message.en,
            source=r.source,
        )
        for r in pack.rules
    ]
    return PackOut(
        name=pack.name,
        description=pack.description,
        source=loaded.source,
        loaded_at=iso(loaded.loaded_at_ms),
        count=len(rules),
        enabled=sum(r.enabled for r in rules),
        rules=rules,
    )


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a posted pack cannot expand into a "billion laughs"."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError("aliases (*name) are not allowed in a posted pack")
        return super().compose_node(parent, index)


def parse_yaml_pack(text: str | bytes, source: str) -> Pack:
    """A pack from YAML text; raise :class:`PackError` (422) naming the rule and the problem."""
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise PackError(f"{source}: not valid YAML ({exc})") from None
    return parse_pack(raw, source)


@router.get("", response_model=PackOut, summary="The loaded rule pack")
def get_pack(_: Reader, rules: RulesDep) -> PackOut:
    """The rules the API has loaded (the file IOC_RULES_PACK, or the built-in Mekong pack)."""
    return pack_out(rules.current)


@router.post(
    "/validate",
    response_model=Validated,
    summary="Validate a rule pack",
    openapi_extra=YAML_BODY,
    responses=INVALID_PACK,
)
async def validate(request: Request, _: Operator) -> Validated:
    """Check a posted YAML pack: 200 with its rule count, or 422 naming the rule and the problem."""
    body = await request.body()
    if not body.strip():
        raise Invalid("post the rule pack as the request body (YAML)")
    pack = parse_yaml_pack(body, "posted pack")
    return Validated(valid=True, name=pack.name, count=len(pack.rules), enabled=sum(r.enabled for r in pack.rules))


@router.post("/reload", response_model=PackOut, summary="Reload the pack from disk", responses=INVALID_PACK)
def reload(principal: Operator, rules: RulesDep) -> PackOut:
    """Read the pack file again; if it is invalid, the loaded pack stays and the answer says why (422)."""
    principal.require_all_areas("reloading the rule pack")
    return pack_out(rules.reload())


@router.post(
    "/backtest", response_model=BacktestOut, summary="Backtest a pack over stored readings", responses=BACKTEST_INVALID
)
def backtest(
    principal: Operator,
    rules: RulesDep,
    registry: RegistryDep,
    settings: SettingsDep,
    influx: InfluxDep,
    body: Annotated[BacktestIn, Body()],
) -> BacktestOut:
    """Replay stored readings through the loaded (or a posted) pack: what would have fired, per rule and device."""
    now = now_ms()
    try:
        start, end = parse_time_ms(body.from_, now=now), parse_time_ms(body.to, now=now)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if end <= start:
        raise Invalid("`to` must be after `from`")
    if end - start > settings.api_backtest_max_hours * 3_600_000:
        raise Invalid(f"a backtest may cover at most {settings.api_backtest_max_hours:g} hours")
    pack = parse_yaml_pack(body.pack, "posted pack") if body.pack is not None else rules.current.pack
    devices = tuple(d for d in registry.devices if principal.may_see(d.province))
    if not devices:
        raise Invalid("this key sees no registered device")
    report = run(
        pack,
        Fleet(devices=devices),
        url=influx.url_with_credentials(),
        db=settings.influx_db,
        start_ms=start,
        end_ms=end,
    )
    summary = report.summary()
    return BacktestOut(
        from_=iso(start),
        to=iso(end),
        from_ms=start,
        to_ms=end,
        pack=pack.name,
        devices=len(devices),
        readings=summary["readings"],
        firings=summary["firings"],
        rules={
            rule: RuleResult(
                firings=r["firings"],
                devices=r["devices"],
                top_devices=[TopDevice(device_id=d, firings=n) for d, n in r["top_devices"]],
            )
            for rule, r in summary["rules"].items()
        },
    )

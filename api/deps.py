"""Dependencies as ``Annotated`` aliases, so route signatures read like declarations."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from alerts.store import AlertStore
from api.config import ApiSettings
from api.influx import Influx
from api.keys import KeyStore
from api.services import Registry, Rules, Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> ApiSettings:
    return services.settings


def get_store(services: ServicesDep) -> AlertStore:
    return services.store


def get_keys(services: ServicesDep) -> KeyStore:
    return services.keys


def get_influx(services: ServicesDep) -> Influx:
    return services.influx


def get_registry(services: ServicesDep) -> Registry:
    return services.registry


def get_rules(services: ServicesDep) -> Rules:
    return services.rules


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
InfluxDep = Annotated[Influx, Depends(get_influx)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RulesDep = Annotated[Rules, Depends(get_rules)]

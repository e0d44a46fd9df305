"""Simulated Mekong Delta devices: realistic, seeded and pure (no I/O, no MQTT).

- :mod:`simulators.signals` — physical signal shapes as functions of time.
- :mod:`simulators.fleetgen` — a seeded fleet over the seed provinces.
- :mod:`simulators.model` — every message a fleet emits in a window of time.
- :mod:`simulators.malformed` — bad messages with the reason ingest must give each.
"""

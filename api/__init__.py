"""The operators' HTTP API (FastAPI): devices, readings, alerts, rules, subscriptions, open data.

Nothing imports this package at module level: ``ioc api`` starts uvicorn with the factory string
``api.main:create_app``, and the ``ioc`` command mounts :mod:`api.cli` lazily.
"""

"""How Mekong IOC keeps readings, statuses and alerts in InfluxDB: one home for the storage layout.

:mod:`storage.layout` names the measurements, tags and fields; :mod:`storage.lineprotocol` writes
them (escaping, value formatting); :mod:`storage.influxql` reads them back (``/query``). Ingest
writes, and the API, the dashboards, the backtest and the benchmarks read, through these names
only. The package imports nothing from the rest of Mekong IOC but the device contract.
"""

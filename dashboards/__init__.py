"""The operators' Grafana dashboards as code (grafana-foundation-sdk), exported to grafana/dashboards/.

Every panel, variable and annotation queries InfluxDB with raw InfluxQL against database ``ioc``
(:mod:`dashboards.queries`); ``ioc grafana export`` writes the JSON, ``ioc grafana push`` uploads
it to a running Grafana, ``ioc grafana check`` runs every query against an InfluxDB.
"""

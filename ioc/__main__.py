"""``python -m ioc``: the same as the ``ioc`` console script."""

from ioc.cli import app

app()

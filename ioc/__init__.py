"""The ``ioc`` command line and the local stack it runs (``ioc demo``)."""

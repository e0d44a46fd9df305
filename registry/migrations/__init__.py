"""Alembic migrations of the registry's schema (run by :func:`registry.migrate.upgrade`)."""

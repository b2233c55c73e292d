"""Dagster resources: thin, configurable adapters between the assets and the outside world."""

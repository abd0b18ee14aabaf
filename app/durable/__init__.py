"""Durable execution on Postgres: the store, the listener, the runner and the delivery worker."""

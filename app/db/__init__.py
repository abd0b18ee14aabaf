"""The data gateway: the one connector (gateway.py), every statement by name (queries.sql), the
versioned SQL functions' callers (one module per table family), typed rows, the schema's
metadata, migrations and the embedded Postgres.

May import: app.config, app.errors, app.states, and third-party libraries. Nothing above it
(engine, workflows, llm, notify, api) is imported here.
"""

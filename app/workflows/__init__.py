"""Workflows: the service facade the API calls (service.py), the runner that executes runs and
the delivery worker that sends notifications.

May import: app.engine, app.db, app.llm, app.notify, app.config,
app.errors, app.states, app.metrics. Never app.api.
"""

"""The HTTP layer: FastAPI routers, pydantic schemas, middleware and the error handlers. No SQL
here: every route calls the workflows' facade (app.workflows.service, app.workflows.process).

May import: app.workflows, the typed rows of app.db.rows, app.db.connection (to answer a
database outage with 503), app.addresses, app.config, app.errors, app.states.
"""

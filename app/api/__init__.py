"""HTTP layer: FastAPI routers and pydantic schemas only; no SQL here."""

"""Integration tests: a real Postgres, with the app in this process (uvicorn in the test's loop)."""

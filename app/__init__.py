"""agent-notify: durable AI-agent runs and email notifications on nothing but Postgres."""

__version__ = "0.1.0"

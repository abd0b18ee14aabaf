"""The durable machinery, free of what the work is: the claim-and-process loop of a worker,
leases and their renewal, the process's LISTEN connection, retries with backoff, supervised
background tasks, the fallback poll and the janitor.

May import: app.db, app.config, app.errors, app.states. Nothing above it (workflows, llm,
notify, api) is imported here.
"""

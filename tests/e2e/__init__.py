"""End-to-end tests: the service as a child process, killed and restarted; the dashboard in a
browser."""

"""The client commands of `agent-notify` (`run`, `status`, `steps`, `wait`, `list`, `cancel`,
`resume`, `delete`, `notify`, `resolve`, `reject`, `approve`, `deny`): Click commands that talk
to a running service through the Python client (agent_notify_client), with Rich for the
tables and the live progress of `--wait`.

May import: agent_notify_client, and nothing of the service but its leaves: these commands
know the service only by its HTTP API, as any other client does.
"""

"""Real servers the tests start: an OpenAI-compatible LLM and an SMTP server."""

"""The agent step of a one-call run: a query in, the model's answer out, failures sorted."""

from __future__ import annotations

from app.errors import TransientError
from app.llm.client import ModelClient
from app.llm.errors import classify
from app.llm.messages import Message


class Agent:
    """Answers a query with one model call through the model interface."""

    def __init__(self, client: ModelClient) -> None:
        self.client = client

    async def answer(self, query: str, *, model: str | None, instructions: str | None) -> str:
        """The model's answer to `query`. Raises TransientError or PermanentError for a failed
        call (missing credentials are permanent); any other exception is a bug and propagates."""
        messages: list[Message] = [
            {"role": "system", "content": instructions or self.client.settings.agent_instructions},
            {"role": "user", "content": query},
        ]
        try:
            response = await self.client.complete(messages, model=model)
        except Exception as exc:
            error = classify(exc)
            if error is None:
                raise
            raise error from exc
        if not response.choices:
            raise TransientError("the model answered with no choices")
        content = getattr(response.choices[0], "message", None)
        text = getattr(content, "content", None)
        if not isinstance(text, str):
            return ""
        # Postgres text holds neither NUL nor lone surrogates: a model emitting one must not
        # make its answer unstorable.
        return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")

"""The one model interface: `ModelClient.complete`, whichever transport carries the call.

Messages, tools and a response format in; litellm's ModelResponse (with usage) or one of
litellm's exception classes out. Two transports sit behind it, held to that contract by
tests/unit/test_model_contract.py: `litellm.acompletion`, and the lean transport (app/llm/lean.py)
for the models and calls it serves while AGENT_LEAN_CALLS is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from app.config import Settings
from app.llm.lean import LeanRoute, LeanTransport
from app.llm.messages import Message, ModelRequest, ResponseFormat, Tool
from app.llm.offline import OFFLINE_PROVIDER, load_litellm
from app.llm.selfcheck import checked_lean_route

if TYPE_CHECKING:
    from litellm import ModelResponse

logger = logging.getLogger(__name__)

Transport = Literal["lean", "acompletion"]


def call_options(*, timeout_seconds: float) -> dict[str, float | int]:
    """The keyword arguments every `litellm.acompletion` call of the service carries."""
    return {
        "timeout": timeout_seconds,
        # Retries are the service's own: durable, with backoff, counted in the workflow.
        "num_retries": 0,
        "max_retries": 0,
    }


class ModelClient:
    """Calls the configured models. Build it off the event loop (`asyncio.to_thread`): it
    imports litellm and finds and checks the configured model's route."""

    def __init__(self, settings: Settings) -> None:
        load_litellm()
        self.settings = settings
        self._missing: dict[str, list[str]] = {}
        self._routes: dict[str, LeanRoute | None] = {}
        self._lean = LeanTransport()
        if settings.offline:
            logger.warning(
                "AGENT_MODEL is not set: answers come from the built-in offline model %s. "
                "Set AGENT_MODEL (e.g. openai/gpt-4o-mini) and AGENT_API_KEY for a real LLM.",
                settings.model,
            )
            return
        logger.info(
            "agent model: %s, called through %s",
            settings.model,
            "the lean transport" if self.transport(settings.model) == "lean" else "acompletion",
        )
        missing = self.missing_credentials(settings.model)
        if missing:
            logger.warning(
                "AGENT_MODEL %s needs %s (or AGENT_API_KEY) in the environment; "
                "until it is set, runs fail at once",
                settings.model,
                " or ".join(missing),
            )

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
    ) -> ModelResponse:
        """One chat completion within AGENT_TIMEOUT_SECONDS, never retried here (the service's
        retries are durable). Raises litellm's exception classes: AuthenticationError for
        missing credentials, Timeout past the deadline, the provider's error otherwise."""
        from litellm.exceptions import AuthenticationError, Timeout

        model = model or self.settings.model
        missing = self.missing_credentials(model)
        if missing:
            raise AuthenticationError(
                message=f"model {model} needs {' or '.join(missing)} (or AGENT_API_KEY) in the "
                "service's environment",
                llm_provider=model.split("/", 1)[0],
                model=model,
            )
        request = ModelRequest(messages, tools=tools, response_format=response_format)
        route = self._route(model)
        timeout = self.settings.agent_timeout_seconds
        try:
            # litellm passes `timeout` to most providers, not all (aiohttp_openai/ drops it).
            async with asyncio.timeout(timeout) as deadline:
                if route is not None and route.serves(request):
                    return await self._lean.send(route, request)
                return await self._acompletion(model, request)
        except TimeoutError as exc:
            if not deadline.expired():  # raised inside, not by the deadline
                raise
            raise Timeout(
                message=f"no answer within {timeout:g} s",
                model=model,
                llm_provider=model.split("/", 1)[0],
            ) from exc

    def transport(self, model: str | None = None) -> Transport:
        """Which transport carries `model`'s calls (calls with parameters the lean route does
        not pass on take acompletion even so)."""
        return "lean" if self._route(model or self.settings.model) else "acompletion"

    def missing_credentials(self, model: str) -> list[str]:
        """Environment variables litellm wants for `model` that are not set (none if
        AGENT_API_KEY or AGENT_API_BASE is given or the model is the offline one)."""
        settings = self.settings
        if (
            settings.agent_api_key
            # A server of the operator's own (vLLM, Ollama, a proxy) may need no key at all.
            or settings.agent_api_base
            or model.startswith(f"{OFFLINE_PROVIDER}/")
        ):
            return []
        if model not in self._missing:
            import litellm

            try:
                found = litellm.validate_environment(model)
                missing = found.get("missing_keys") or []
            except Exception:  # a model litellm cannot map: the call itself reports it
                missing = []
            self._missing[model] = [name for name in missing if name.endswith("_API_KEY")]
        return self._missing[model]

    async def aclose(self) -> None:
        """Close the lean transport's HTTP connections."""
        await self._lean.aclose()

    def _route(self, model: str) -> LeanRoute | None:
        if not self.settings.agent_lean_calls:
            return None
        if model not in self._routes:
            self._routes[model] = checked_lean_route(model, self.settings)
        return self._routes[model]

    async def _acompletion(self, model: str, request: ModelRequest) -> ModelResponse:
        """One chat completion through `litellm.acompletion`."""
        import litellm

        settings = self.settings
        response = await litellm.acompletion(
            model=model,
            # Copies: litellm changes the message dicts it is given.
            messages=[dict(message) for message in request.messages],
            api_base=settings.agent_api_base,
            api_key=settings.agent_api_key.get_secret_value() if settings.agent_api_key else None,
            **call_options(timeout_seconds=settings.agent_timeout_seconds),
            **request.params(),
        )
        if not isinstance(response, litellm.ModelResponse):  # a stream: never asked for
            raise TypeError(f"litellm.acompletion returned a {type(response).__name__}")
        return response

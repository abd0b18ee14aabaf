"""The agent step: one litellm call, with errors sorted into transient and permanent.

With no AGENT_MODEL configured, a built-in offline model (registered with litellm as a custom
provider, so the same code path runs) answers deterministically.

Models on litellm's plain OpenAI chat configuration and its Chat Completions API
(`openai/gpt-4o-mini`, `gpt-4o-mini`, or an `openai/<name>` without a further `/` on an
OpenAI-compatible AGENT_API_BASE) take a lean call when AGENT_LEAN_CALLS is on (the default):
litellm's own configuration builds the URL, the headers and the request body and turns the reply
into its ModelResponse, litellm maps a failure to its exception, and the request goes out on the
agent's aiohttp session with litellm's TLS settings. What it skips is the work
`litellm.acompletion` wraps around every call and this service never reads: its call-time
bookkeeping, the cost calculation and the success logging (nearly nine tenths of its CPU per
call; docs/benchmarks.md). Every other model (o-series, gpt-5, models litellm sends to the
Responses API, other providers), and every model with AGENT_LEAN_CALLS=false, goes through
`litellm.acompletion`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import ssl
import textwrap
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from app.config import OFFLINE_MODEL, Settings
from app.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

OFFLINE_PROVIDER = OFFLINE_MODEL.split("/", 1)[0]
# Reply headers describing the bytes on the wire, which aiohttp has already undone (a gzip
# body arrives unzipped): handed on, httpx would undo them a second time.
UNDONE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# HTTP statuses worth another attempt; any other 4xx means the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def offline_answer(query: str, instructions: str) -> str:
    """The offline model's reply: deterministic, and says how to get a real one."""
    quoted = textwrap.shorten(" ".join(query.split()), width=300, placeholder=" …")
    return (
        f"[offline model] You asked: {quoted}\n\n"
        "This answer comes from agent-notify's built-in offline model, which runs when no LLM "
        "is configured. The request went through the whole durable path - accepted, executed, "
        "resolved and delivered - just as it would with a real model.\n\n"
        "To get real answers, set AGENT_MODEL to a litellm model name (for example "
        "openai/gpt-4o-mini) and the provider's key (AGENT_API_KEY, or the provider's own "
        "variable such as OPENAI_API_KEY)."
    )


def load_litellm() -> Any:
    """Import litellm once, offline-safe, with the offline model registered."""
    # Without this, importing litellm fetches its model cost map from the internet.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm: Any = importlib.import_module("litellm")
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    if not any(item["provider"] == OFFLINE_PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": OFFLINE_PROVIDER, "custom_handler": _offline_handler(litellm)},
        ]
    return litellm


def call_options(*, timeout_seconds: float) -> dict[str, Any]:
    """The keyword arguments every `litellm.acompletion` call of the service carries."""
    return {
        "timeout": timeout_seconds,
        # Retries are ours: durable, with backoff, counted in the workflow row.
        "num_retries": 0,
        "max_retries": 0,
    }


# A provider's error text kept in a workflow row and its logs: its message, not a whole page.
MAX_ERROR_TEXT = 500


@dataclass(frozen=True)
class LeanRoute:
    """How a lean call reaches its model: litellm's configuration and where it points."""

    model: str  # the provider's own name for it (no `openai/` prefix)
    config: Any  # litellm's OpenAIGPTConfig (or its unknown-model twin)
    url: str
    api_key: str | None
    headers: dict[str, str]  # besides those the configuration adds (Authorization, …)
    proxy: str | None  # from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY, read once
    ssl: ssl.SSLContext | bool  # litellm's TLS settings (SSL_VERIFY, SSL_CERT_FILE, …)
    # What the reply handed to litellm says it answers; made once (httpx parses the URL).
    request: httpx.Request


class _NoLogging:
    """Stands in for litellm's per-call Logging object, which the lean call does not keep."""

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        pass


def lean_route(litellm: Any, model: str, settings: Settings) -> LeanRoute | None:
    """The lean route for `model`, or None when it must go through `litellm.acompletion`.

    Only models litellm serves with its plain OpenAI chat configuration on the Chat Completions
    API qualify: the o-series and gpt-5 configurations rewrite parameters, some models (and
    every model under litellm.route_all_chat_openai_to_responses) go to the Responses API, and
    `openai/responses/…`-style names switch APIs.
    """
    try:
        name, provider, dynamic_key, dynamic_base = litellm.get_llm_provider(
            model, api_base=settings.agent_api_base
        )
        if provider != "openai" or "/" in name:
            return None
        from litellm.llms.custom_httpx.http_handler import get_ssl_configuration
        from litellm.llms.openai.chat.gpt_transformation import (
            OpenAIGPTConfig,
            OpenAIUnknownModelConfig,
        )
        from litellm.responses.bridge_check import responses_api_bridge_check

        config = litellm.ProviderConfigManager.get_provider_chat_config(
            model=name, provider=litellm.LlmProviders.OPENAI
        )
        if type(config) not in (OpenAIGPTConfig, OpenAIUnknownModelConfig):
            return None
        # The api_base and key litellm's OpenAI path would use, in its order.
        api_base = (
            settings.agent_api_base
            or dynamic_base
            or litellm.api_base
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or "https://api.openai.com/v1"
        )
        mode, _ = responses_api_bridge_check(
            model=name, custom_llm_provider="openai", api_base=api_base
        )
        if mode.get("mode") == "responses":
            return None
        api_key = (
            (settings.agent_api_key.get_secret_value() if settings.agent_api_key else None)
            or dynamic_key
            or litellm.api_key
            or litellm.openai_key
            or os.environ.get("OPENAI_API_KEY")
        )
        url = config.get_complete_url(
            api_base=api_base, api_key=api_key, model=name, optional_params={}, litellm_params={}
        )
        tls = get_ssl_configuration()
    except Exception:  # a model litellm cannot map, or a litellm without these: acompletion
        logger.debug("model %s goes through litellm.acompletion", model, exc_info=True)
        return None
    # Sent as litellm's OpenAI path and the openai SDK under it send them.
    organization = (
        litellm.organization
        or os.environ.get("OPENAI_ORGANIZATION")
        or os.environ.get("OPENAI_ORG_ID")
    )
    project = os.environ.get("OPENAI_PROJECT_ID")
    headers = {
        **(litellm.headers or {}),
        **({"OpenAI-Organization": organization} if organization else {}),
        **({"OpenAI-Project": project} if project else {}),
    }
    return LeanRoute(
        model=name,
        config=config,
        url=url,
        api_key=api_key,
        headers=headers,
        proxy=env_proxy(url),
        ssl=tls if isinstance(tls, ssl.SSLContext) else tls is not False,
        request=httpx.Request("POST", url),
    )


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    NO_PROXY), as httpx and the openai SDK honour them. Read once per route: aiohttp's
    trust_env would read the environment and ~/.netrc again in a thread for every request."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def provider_error_text(status: int, body: str) -> str:
    """What a failed call records: the provider's error message when its body has one (as the
    openai SDK reports it), else the status; never a whole HTML error page."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        error = error["message"]
    if isinstance(error, str) and error:
        return error[:MAX_ERROR_TEXT]
    if parsed is not None:
        return f"Error code: {status} - {body[:MAX_ERROR_TEXT]}"
    return f"Error code: {status}"


def _offline_handler(litellm: Any) -> Any:
    class OfflineModel(litellm.CustomLLM):  # type: ignore[misc]
        async def acompletion(
            self, model: str, messages: list[Any], *args: Any, **kwargs: Any
        ) -> Any:
            system = next((m["content"] for m in messages if m["role"] == "system"), "")
            user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            return litellm.ModelResponse(
                model=model,
                choices=[
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": offline_answer(user, system)},
                    }
                ],
            )

    return OfflineModel()


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a litellm exception.

    litellm's aiohttp handler (the aiohttp_openai/ provider) reports every HTTP error as a 500:
    it reads `status_code`, which aiohttp's ClientResponseError spells `status`. The real one
    is on the aiohttp error it was raised from.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, aiohttp.ClientResponseError):
            return cause.status
        cause = cause.__cause__ or cause.__context__
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def classify(exc: BaseException) -> TransientError | PermanentError:
    """Sort a litellm (openai-style) exception: retry timeouts, 429 and 5xx; fail on the rest."""
    status = http_status(exc)
    message = f"{type(exc).__name__}: {exc}"
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES:
        return PermanentError(message)
    return TransientError(message)


class Agent:
    """Answers a query with the configured model; raises TransientError or PermanentError."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._litellm = load_litellm()
        self._missing: dict[str, list[str]] = {}
        self._routes: dict[str, LeanRoute | None] = {}
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        if settings.offline:
            logger.warning(
                "AGENT_MODEL is not set: answers come from the built-in offline model %s. "
                "Set AGENT_MODEL (e.g. openai/gpt-4o-mini) and AGENT_API_KEY for a real LLM.",
                OFFLINE_MODEL,
            )
        else:
            logger.info("agent model: %s", settings.agent_model)
            # Here, in start-up's thread, not in the event loop at the first run: finding the
            # route loads litellm's model info and the CA bundle.
            route = self.lean_route(settings.model)
            logger.info(
                "%s is called %s",
                settings.model,
                "lean (litellm's OpenAI configuration)" if route else "through litellm.acompletion",
            )
            missing = self.missing_credentials(settings.model)
            if missing:
                logger.warning(
                    "AGENT_MODEL %s needs %s (or AGENT_API_KEY) in the environment; "
                    "until it is set, runs fail at once",
                    settings.model,
                    " or ".join(missing),
                )

    def missing_credentials(self, model: str) -> list[str]:
        """Environment variables litellm wants for `model` that are not set (none if
        AGENT_API_KEY is given or the model is the offline one)."""
        settings = self._settings
        if (
            settings.agent_api_key
            # A server of the operator's own (vLLM, Ollama, a proxy) may need no key at all.
            or settings.agent_api_base
            or model.startswith(f"{OFFLINE_PROVIDER}/")
        ):
            return []
        if model not in self._missing:
            try:
                found = self._litellm.validate_environment(model)
                missing = found.get("missing_keys") or []
            except Exception:  # a model litellm cannot map: let the call itself decide
                missing = []
            self._missing[model] = [name for name in missing if name.endswith("_API_KEY")]
        return self._missing[model]

    async def answer(self, query: str, *, model: str | None, instructions: str | None) -> str:
        settings = self._settings
        model = model or settings.model
        missing = self.missing_credentials(model)
        if missing:
            raise PermanentError(
                f"model {model} needs {' or '.join(missing)} (or AGENT_API_KEY) in the "
                "service's environment"
            )
        messages = [
            {"role": "system", "content": instructions or settings.agent_instructions},
            {"role": "user", "content": query},
        ]
        try:
            route = self.lean_route(model)
            # litellm passes `timeout` to most providers, not all (aiohttp_openai/ drops it).
            async with asyncio.timeout(settings.agent_timeout_seconds) as deadline:
                if route is not None:
                    response = await self._lean_call(route, messages)
                else:
                    response = await self._acompletion(model, messages)
        except TimeoutError as exc:
            if not deadline.expired():  # a timeout of the provider's own, from inside
                raise classify(exc) from exc
            raise TransientError(
                f"Timeout: no answer within {settings.agent_timeout_seconds:g} s"
            ) from exc
        except Exception as exc:
            raise classify(exc) from exc
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError) as exc:
            raise TransientError(f"malformed LLM response: {exc}") from exc
        if not isinstance(content, str):
            return ""
        # Postgres text holds neither NUL nor lone surrogates: a model emitting one must not
        # make its answer unstorable.
        return content.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")

    def lean_route(self, model: str) -> LeanRoute | None:
        """How `model` is called lean, or None when it goes through `litellm.acompletion`."""
        if not self._settings.agent_lean_calls:
            return None
        if model not in self._routes:
            self._routes[model] = lean_route(self._litellm, model, self._settings)
        return self._routes[model]

    async def _acompletion(self, model: str, messages: list[dict[str, str]]) -> Any:
        """One chat completion through `litellm.acompletion`."""
        settings = self._settings
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            **call_options(timeout_seconds=settings.agent_timeout_seconds),
        }
        if settings.agent_api_base:
            kwargs["api_base"] = settings.agent_api_base
        if settings.agent_api_key:
            kwargs["api_key"] = settings.agent_api_key.get_secret_value()
        return await self._litellm.acompletion(**kwargs)

    async def _lean_call(self, route: LeanRoute, messages: list[dict[str, str]]) -> Any:
        """One chat completion through litellm's OpenAI configuration, sent on our session."""
        config = route.config
        headers = config.validate_environment(
            headers=dict(route.headers),
            model=route.model,
            messages=messages,
            optional_params={},
            litellm_params={},
            api_key=route.api_key,
            api_base=route.url,
        )
        data = config.transform_request(
            model=route.model,
            messages=messages,
            optional_params={},
            litellm_params={},
            headers=headers,
        )
        async with self._http().post(
            route.url,
            data=json.dumps(data),
            headers=headers,
            proxy=route.proxy,
            ssl=route.ssl,
        ) as reply:
            body = await reply.read()  # decompressed by aiohttp
            status = reply.status
            reply_headers = [
                (name, value)
                for name, value in reply.headers.items()
                if name.lower() not in UNDONE_HEADERS
            ]
        raw = httpx.Response(
            status,
            headers=reply_headers,
            content=body,
            request=route.request,
        )
        if not 200 <= status < 300:
            # The exception litellm.acompletion would raise (BadRequestError, RateLimitError, …,
            # with the provider's error message and the status that classify reads): litellm
            # maps its provider error to it by raising.
            error = config.get_error_class(
                error_message=provider_error_text(status, raw.text),
                status_code=status,
                headers=raw.headers,
            )
            self._litellm.exception_type(
                model=route.model, original_exception=error, custom_llm_provider="openai"
            )
            raise error
        return config.transform_response(
            model=route.model,
            raw_response=raw,
            model_response=self._litellm.ModelResponse(),
            logging_obj=_NoLogging(),
            request_data=data,
            messages=messages,
            optional_params={},
            litellm_params={},
            encoding=None,
            api_key=route.api_key,
        )

    def _http(self) -> aiohttp.ClientSession:
        """The lean calls' session: made in the running loop on first use, kept until aclose
        (a session belongs to its loop: an agent used from another loop gets a new one)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                # The runner's concurrency is the limit.
                connector=aiohttp.TCPConnector(limit=0),
                # The call's deadline is the agent's own (asyncio.timeout in answer).
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the lean calls' HTTP connections."""
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._session_loop = None

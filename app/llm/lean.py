"""The lean transport: litellm's own OpenAI chat configuration, the request sent on our session.

For models litellm serves with its plain OpenAI chat configuration on the Chat Completions API
(`openai/gpt-4o-mini`, `gpt-4o-mini`, or an `openai/<name>` on an OpenAI-compatible
AGENT_API_BASE), litellm's configuration builds the URL, the headers and the body and turns the
reply into its ModelResponse, and litellm maps a failure to its exception class; the request
goes out on one aiohttp session with litellm's TLS settings. What it skips is the bookkeeping
`litellm.acompletion` wraps around every call (logging objects, cost calculation, success
callbacks), which the service never reads and which costs most of a call's CPU
(docs/benchmarks.md).

It relies on litellm internals, imported in one place (`_route`); app/llm/selfcheck.py proves
them on a canned request and reply before a route is used, and tests/unit/test_model_contract.py
holds both transports to the same replies and exceptions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, cast

import aiohttp
import httpx

from app.config import Settings
from app.llm.errors import message_of, provider_error_text
from app.llm.messages import ModelRequest

if TYPE_CHECKING:
    from litellm import ModelResponse
    from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig
    from litellm.types.llms.openai import AllMessageValues

logger = logging.getLogger(__name__)

# Reply headers describing the bytes on the wire, which aiohttp has already undone (a gzip
# body arrives unzipped): handed on, httpx would undo them a second time.
UNDONE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# Raised by a reply parser that was called wrongly or is broken, never by a reply: bugs.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, ImportError, AssertionError)


@dataclass(frozen=True)
class LeanRoute:
    """How a lean call reaches its model: litellm's configuration and where it points."""

    model: str  # the provider's own name for it (no `openai/` prefix)
    config: OpenAIGPTConfig  # or its unknown-model twin
    url: str
    api_key: str | None
    headers: dict[str, str]  # besides those the configuration adds (Authorization, …)
    proxy: str | None  # from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY, read once
    ssl: ssl.SSLContext | bool  # litellm's TLS settings (SSL_VERIFY, SSL_CERT_FILE, …)
    # What the reply handed to litellm says it answers; made once (httpx parses the URL).
    request: httpx.Request
    supported_params: frozenset[str]  # the OpenAI parameters the configuration passes on
    # False when litellm would send this model's calls with function tools to the Responses
    # API: those calls go through litellm.acompletion.
    tools_on_chat: bool = True

    def serves(self, request: ModelRequest) -> bool:
        """Whether this route carries `request` as litellm.acompletion would."""
        params = request.params()
        if request.tools and not self.tools_on_chat:
            return False
        return params.keys() <= self.supported_params


def lean_route(model: str, settings: Settings) -> LeanRoute | None:
    """The lean route for `model`, or None when its calls go through `litellm.acompletion`.

    Only models litellm serves with its plain OpenAI chat configuration on the Chat Completions
    API qualify: the o-series and gpt-5 configurations rewrite parameters, some models (and
    every model under litellm.route_all_chat_openai_to_responses) go to the Responses API, and
    `openai/responses/…`-style names switch APIs. Blocking (it may load a CA bundle). Raises
    whatever a litellm without the internals it uses raises (ImportError, AttributeError…).
    """
    import litellm

    try:
        name, provider, dynamic_key, dynamic_base = litellm.get_llm_provider(
            model, api_base=settings.agent_api_base
        )
    except Exception:  # a model litellm cannot map: litellm.acompletion reports it per call
        logger.debug("model %s goes through litellm.acompletion", model, exc_info=True)
        return None
    if provider != "openai" or "/" in name:
        return None
    return _route(name, dynamic_key, dynamic_base, settings)


def _route(
    name: str, dynamic_key: str | None, dynamic_base: str | None, settings: Settings
) -> LeanRoute | None:
    """The route litellm's OpenAI path would take for `name`, or None if it is not plain."""
    import litellm
    from litellm.llms.custom_httpx.http_handler import get_ssl_configuration
    from litellm.llms.openai.chat.gpt_transformation import (
        OpenAIGPTConfig,
        OpenAIUnknownModelConfig,
    )
    from litellm.responses.bridge_check import responses_api_bridge_check
    from litellm.types.utils import LlmProviders

    config = litellm.ProviderConfigManager.get_provider_chat_config(
        model=name, provider=LlmProviders.OPENAI
    )
    # Exactly these: a subclass (o-series, gpt-5, …) rewrites parameters on the way.
    if not isinstance(config, OpenAIGPTConfig) or type(config) not in (
        OpenAIGPTConfig,
        OpenAIUnknownModelConfig,
    ):
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

    def api_for(tools: list[dict[str, object]] | None) -> object:
        mode, _ = responses_api_bridge_check(
            model=name, custom_llm_provider="openai", tools=tools, api_base=api_base
        )
        return mode.get("mode")

    if api_for(None) == "responses":
        return None
    function_tool: dict[str, object] = {"type": "function", "function": {"name": "f"}}
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
    return LeanRoute(
        model=name,
        config=config,
        url=url,
        api_key=api_key,
        headers=_openai_headers(),
        proxy=env_proxy(url),
        ssl=tls if isinstance(tls, ssl.SSLContext) else tls is not False,
        request=httpx.Request("POST", url),
        supported_params=frozenset(config.get_supported_openai_params(name)),
        tools_on_chat=api_for([function_tool]) != "responses",
    )


def _openai_headers() -> dict[str, str]:
    """Headers besides the key's, as litellm's OpenAI path and the openai SDK under it send
    them."""
    import litellm

    organization = (
        litellm.organization
        or os.environ.get("OPENAI_ORGANIZATION")
        or os.environ.get("OPENAI_ORG_ID")
    )
    project = os.environ.get("OPENAI_PROJECT_ID")
    return {
        **(litellm.headers or {}),
        **({"OpenAI-Organization": organization} if organization else {}),
        **({"OpenAI-Project": project} if project else {}),
    }


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    NO_PROXY), as httpx and the openai SDK honour them. Read once per route: aiohttp's
    trust_env would read the environment and ~/.netrc again in a thread for every request."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def build_request(route: LeanRoute, request: ModelRequest) -> tuple[dict[str, str], bytes]:
    """The headers and the JSON body litellm's configuration makes of `request`."""
    from litellm.utils import validate_and_fix_openai_messages

    config = route.config
    # As litellm.acompletion prepares them (it drops None fields, for one); on copies, as it
    # changes the dicts it is given.
    messages = cast(
        "list[AllMessageValues]",
        validate_and_fix_openai_messages([dict(message) for message in request.messages]),
    )
    optional_params = config.map_openai_params(
        non_default_params=request.params(),
        optional_params={},
        model=route.model,
        drop_params=False,
    )
    headers = config.validate_environment(
        headers=dict(route.headers),
        model=route.model,
        messages=messages,
        optional_params=optional_params,
        litellm_params={},
        api_key=route.api_key,
        api_base=route.url,
    )
    data = config.transform_request(
        model=route.model,
        messages=messages,
        optional_params=optional_params,
        litellm_params={},
        headers=headers,
    )
    return headers, json.dumps(data).encode()


def parse_reply(route: LeanRoute, request: ModelRequest, raw: httpx.Response) -> ModelResponse:
    """The ModelResponse litellm makes of a reply, or the exception litellm.acompletion raises
    for it (an error status, or a body that is no chat completion)."""
    import litellm

    config = route.config
    if not 200 <= raw.status_code < 300:
        error = config.get_error_class(
            error_message=provider_error_text(raw.status_code, raw.text),
            status_code=raw.status_code,
            headers=raw.headers,
        )
        _raise_mapped(route, error)
    messages = cast("list[AllMessageValues]", list(request.messages))
    try:
        return config.transform_response(
            model=route.model,
            raw_response=raw,
            model_response=litellm.ModelResponse(),
            logging_obj=cast("litellm.Logging", _NoLogging()),
            request_data={},
            messages=messages,
            optional_params=request.params(),
            litellm_params={},
            encoding=None,
            api_key=route.api_key,
        )
    except PROGRAMMING_ERRORS:
        raise
    except Exception as exc:
        # As litellm's OpenAI handler does with whatever goes wrong reading a reply.
        message = f"invalid reply from the model server: {message_of(exc)}"
        _raise_mapped(route, config.get_error_class(message, 500, raw.headers))


def _raise_mapped(route: LeanRoute, error: Exception) -> NoReturn:
    """Raise the litellm exception `litellm.acompletion` raises for `error`."""
    import litellm

    try:
        litellm.exception_type(
            model=route.model, original_exception=error, custom_llm_provider="openai"
        )
    except Exception as mapped:
        if mapped.__context__ is not None:
            raise  # raised while handling a failure (a network error): that is its cause
        # A provider's reply: as from acompletion, its error (with the reply's headers, which
        # say how long a 429 asks to wait) stays on the chain.
        raise mapped from error
    raise error  # exception_type always raises; this keeps the contract if it ever does not


class _NoLogging:
    """Stands in for litellm's per-call Logging object, which the lean call does not keep."""

    def post_call(self, *args: object, **kwargs: object) -> None:
        pass


class LeanTransport:
    """Sends lean calls on one aiohttp session per event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def send(self, route: LeanRoute, request: ModelRequest) -> ModelResponse:
        """One chat completion; litellm's exception classes for every failure of the call."""
        headers, body = build_request(route, request)
        try:
            async with self._http().post(
                route.url, data=body, headers=headers, proxy=route.proxy, ssl=route.ssl
            ) as reply:
                content = await reply.read()  # decompressed by aiohttp
                status = reply.status
                reply_headers = [
                    (name, value)
                    for name, value in reply.headers.items()
                    if name.lower() not in UNDONE_HEADERS
                ]
        except (aiohttp.ClientError, OSError):
            # What the openai SDK under litellm.acompletion reports for it.
            _raise_mapped(route, route.config.get_error_class("Connection error.", 500, {}))
        raw = httpx.Response(status, headers=reply_headers, content=content, request=route.request)
        return parse_reply(route, request, raw)

    def _http(self) -> aiohttp.ClientSession:
        """The session: made in the running loop on first use, kept until aclose (a session
        belongs to its loop: a transport used from another loop gets a new one)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                # The runner's concurrency is the limit.
                connector=aiohttp.TCPConnector(limit=0),
                # The call's deadline is the client's own (asyncio.timeout in ModelClient).
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the session's connections (if it belongs to the running loop)."""
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._session_loop = None

"""Request bodies, with the examples the /docs page shows (the answers: app/api/answers.py)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.addresses import normalize_address
from app.config import KEY_PATTERN
from app.states import AGENT_PROMISE, Channel

KEY_DESCRIPTION = (
    "The workflow's key, chosen by the client: 1 to 256 URL-safe characters "
    "(letters, digits, '.', '_', '~', '-'). Every call with the same key addresses the same "
    "workflow."
)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _storable(value: str) -> str:
    # Postgres text holds neither NUL nor lone UTF-16 surrogates (which JSON's \\ud800 escapes
    # can smuggle in); refuse them here rather than fail at the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it has a lone surrogate escape)") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
# Not min_length=1: "" would get pydantic's own message, "   " this one; both get this one.
Query = Annotated[Text, AfterValidator(_not_blank), Field(json_schema_extra={"minLength": 1})]


def _json_storable(value: JsonValue) -> JsonValue:
    """Postgres jsonb holds neither NUL nor lone surrogates, in keys or strings, nor NaN or
    infinities (which Python's JSON parser lets through)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, str):
        _storable(value)
    elif isinstance(value, list):
        for item in value:
            _json_storable(item)
    elif isinstance(value, dict):
        for name, item in value.items():
            _storable(name)
            _json_storable(item)
    return value


# A tool's name as models accept it (OpenAI's function names).
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["add"])]


class RunRequest(BaseModel):
    """The agent task. The seed's bare JSON string is accepted as `{"query": <string>}`."""

    model_config = ConfigDict(extra="forbid")

    query: Query = Field(description="What the agent is asked.")
    model: Annotated[Text, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="A litellm model name for this run; default AGENT_MODEL."
    )
    instructions: Annotated[Text, Field(min_length=1)] | None = Field(
        default=None, description="System instructions for this run; default AGENT_INSTRUCTIONS."
    )
    tools: Annotated[list[ToolName], Field(max_length=128)] | None = Field(
        default=None,
        description="The tools this run may call (their names, as `GET /agent` lists them); "
        "default every configured tool, `[]` none.",
        examples=[["add", "multiply"]],
    )
    max_steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Model turns this run may take, at most AGENT_MAX_STEPS (the default); a run "
        "that needs more fails with `max_steps_exceeded`.",
    )
    priority: int = Field(
        default=0,
        ge=-100,
        le=100,
        description="Higher first: claims and model slots go by priority, then due time. A "
        "waiting run gains one point per 10 s it waits, so a lower priority waits at most 10 s "
        "per point of difference. Scheduling only: a call with another priority attaches to "
        "the same run.",
    )
    approvers: Annotated[list[SubscribeRequest], Field(min_length=1, max_length=16)] | None = Field(
        default=None,
        description="Who the agent may ask for an approval, in the forms of `on_notify` "
        '(an email, `{"webhook": …}`, `{"apprise": …}`): the run\'s model gets the '
        "built-in tool `request_approval`, and each approver is sent the question with a "
        "link to decide.",
        examples=[["reviewer@example.com"]],
    )
    approval_timeout_seconds: Annotated[float, Field(gt=0, le=30 * 86400)] | None = Field(
        default=None,
        description="How long the approvers have to decide (default APPROVAL_TIMEOUT_SECONDS); "
        'then the tool\'s result is `{"approved": false, "timed_out": true}`.',
    )

    @model_validator(mode="after")
    def _approvers_without_promise(self) -> RunRequest:
        for approver in self.approvers or ():
            if "promise" in approver.model_fields_set:
                raise ValueError("an approver names no `promise`: it is asked about the run's")
            if approver.webhook is not None and approver.webhook.secret is None:
                raise ValueError(
                    'a webhook approver needs its `secret` (`{"webhook": {"url": …, "secret": '
                    '"whsec_…"}}`): the approval request is signed with it, and no answer of '
                    "the run could show a generated one"
                )
        return self

    output_schema: Annotated[dict[str, JsonValue], AfterValidator(_json_storable)] | None = Field(
        default=None,
        description="A JSON Schema the answer must match: the output (and the promise's "
        "value) is then that JSON value, not text. Passed to the model as its "
        "`response_format` where it takes one, else as an instruction; an answer that does "
        "not match gets one repair turn, then the run fails with `output_invalid`.",
        examples=[
            {
                "type": "object",
                "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
                "required": ["title", "score"],
            }
        ],
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        return {"query": data} if isinstance(data, str) else data


EmailAddress = Annotated[
    str,
    Field(min_length=3, max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(normalize_address),
]


PromiseName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=KEY_PATTERN,
        description="A promise of the workflow; `agent_response` is the one the agent resolves.",
        examples=["agent_response", "approval"],
    ),
]


# The email a webhook or Apprise subscription stands in for; and an explicit `"email": null`.
_CHANNEL_FORM = object()
_NULL = object()

Target = Annotated[Text, Field(min_length=1, max_length=2048)]
WebhookSecret = Annotated[
    str,
    Field(
        pattern=r"^whsec_[A-Za-z0-9+/]{16,256}={0,2}$",
        description="Signs the events (Standard Webhooks); `whsec_` and base64 of the key.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ),
]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Target = Field(description="Where the events are POSTed (http:// or https://).")
    secret: WebhookSecret | None = Field(
        default=None, description="Signs the events; omitted: generated and answered once."
    )


class SubscribeRequest(BaseModel):
    """Who to notify: one of `email`, `webhook` or `apprise`. The seed's bare JSON string is
    accepted as `{"email": <string>}`."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress | None = Field(
        default=None,
        validate_default=True,
        description="The address that gets the agent's answer.",
    )
    webhook: WebhookRequest | None = Field(
        default=None,
        description=(
            "A URL that gets the outcome as a signed Standard Webhooks event, or the URL with "
            "its `secret`."
        ),
    )
    apprise: Target | None = Field(
        default=None,
        description="An Apprise URL (`slack://…`, `tgram://…`, `ntfy://…`, `json://…`, …).",
    )
    promise: PromiseName = Field(
        default=AGENT_PROMISE,
        description="The promise whose outcome is told; by default the agent's answer.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"email": data}
        if isinstance(data, dict) and "email" not in data:
            if "webhook" in data or "apprise" in data:
                return {**data, "email": _CHANNEL_FORM}
        elif isinstance(data, dict) and data["email"] is None:
            return {**data, "email": _NULL}
        return data

    @field_validator("webhook", mode="before")
    @classmethod
    def _bare_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("email", mode="wrap")
    @classmethod
    def _email_unless_channel(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Required unless another channel is named, with pydantic's own words for the email
        # forms.
        if value is _CHANNEL_FORM:
            return None
        if value is _NULL:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        if value is None:
            raise PydanticCustomError("missing", "Field required")
        return handler(value)

    @model_validator(mode="after")
    def _one_target(self) -> SubscribeRequest:
        named = [self.email, self.webhook, self.apprise]
        if sum(target is not None for target in named) != 1:
            raise ValueError("name one subscriber: `email`, `webhook` or `apprise`")
        return self

    @property
    def channel(self) -> Channel:
        if self.webhook is not None:
            return Channel.WEBHOOK
        return Channel.APPRISE if self.apprise is not None else Channel.EMAIL

    @property
    def target(self) -> tuple[str, str | None]:
        """A webhook's or Apprise URL, and the webhook's secret if given."""
        if self.webhook is not None:
            return self.webhook.url, self.webhook.secret
        return self.apprise or "", None


RunRequest.model_rebuild()


def _string_or(model: type[BaseModel], string: dict[str, Any]) -> WithJsonSchema:
    """The documented body schema: the seed's bare string, or the canonical object."""
    return WithJsonSchema({"anyOf": [string, model.model_json_schema()]})


RunBody = Annotated[
    RunRequest,
    _string_or(RunRequest, {"type": "string", "minLength": 1, "description": "The query."}),
]
SubscribeBody = Annotated[
    SubscribeRequest,
    _string_or(
        SubscribeRequest, {"type": "string", "format": "email", "description": "The address."}
    ),
]

RUN_EXAMPLES: dict[str, Any] = {
    "seed": {
        "summary": "The seed's form: a bare JSON string",
        "value": "Write a 1000-word description of Durable Execution",
    },
    "object": {
        "summary": "The canonical form, with options",
        "value": {
            "query": "Summarise the idea of durable promises in three sentences",
            "model": "openai/gpt-4o-mini",
            "instructions": "You are a concise technical writer.",
        },
    },
}


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[JsonValue, AfterValidator(_json_storable)] = Field(
        description="The promise's value: any JSON.", examples=[{"approved": True}]
    )


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: Annotated[Text, Field(min_length=1, max_length=4000)] = Field(
        description="Why the promise failed.", examples=["the reviewer declined"]
    )


# What each required field of a request body is for: named when a body lacks it.
REQUIRED_FIELDS: dict[str, str] = {
    name: description[:1].lower() + description[1:].rstrip(".")
    for model in (RunRequest, SubscribeRequest, ResolveRequest, RejectRequest)
    for name, field in model.model_fields.items()
    if (field.is_required() or name == "email") and (description := field.description)
}

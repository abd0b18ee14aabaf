"""Resuming a failed run: it continues from its journal, and its subscribers hear the new
outcome.

The run goes back to `pending` and any worker takes it (the `run` wake-up sent after the
resuming statement wakes them all); it is rebuilt from its steps, so finished model turns and
tool calls are not made again, and the step that failed (its model call) runs again under the
same id. Limits are read anew as the run goes on: an operator who raised AGENT_MAX_STEPS or
AGENT_MAX_TOKENS_PER_RUN (and restarted the service), or a `max_steps` given here, lets it take
more turns.

Its subscribers: each one told of the failure (or not told, NOTIFY_ON_FAILURE being off, or
whose notice could not be sent or is still on its way) waits again, under a new Message-ID or
webhook-id, and is notified of the new outcome like any subscriber of a run that finishes. A
notice of the failure already under way may still arrive first: the subscriber then hears both,
failure and new outcome, in that order, each under its own id. Unsubscribed and expired
subscribers are left alone.
"""

from __future__ import annotations

import secrets

from app.config import Settings
from app.db.rows import WorkflowRow
from app.db.runs import NotFailed, UnknownWorkflow
from app.db.store import Store
from app.engine.listener import Listener
from app.errors import Conflict, InvalidInput, NotFound


class Resuming:
    def __init__(self, *, store: Store, listener: Listener, settings: Settings) -> None:
        self._store = store
        self._listener = listener
        self._settings = settings

    async def resume(self, key: str, *, max_steps: int | None = None) -> WorkflowRow:
        """The run, pending again. NotFound for an unknown key; Conflict (`not_failed`) for a
        run that has not failed; InvalidInput for a `max_steps` over AGENT_MAX_STEPS."""
        limit = self._settings.agent_max_steps
        if max_steps is not None and max_steps > limit:
            raise InvalidInput(
                f"max_steps is {max_steps}; a run may take at most {limit} model turns "
                "(AGENT_MAX_STEPS)",
                code="max_steps_too_large",
            )
        try:
            workflow = await self._store.runs.resume(
                key, max_steps=max_steps, nonce=secrets.token_hex(4)
            )
        except UnknownWorkflow as exc:
            raise NotFound(f"no workflow {key!r}") from exc
        except NotFailed as exc:
            raise Conflict(
                f"workflow {key!r} is {exc.existing.status}: only a failed run can be resumed",
                code="not_failed",
            ) from exc
        self._listener.wake(key)
        return workflow

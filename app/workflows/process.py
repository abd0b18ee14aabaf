"""One process of the service: every part built in order from the settings, started, and torn
down in reverse order with a grace period; its readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import generate_latest

from app import __version__
from app.config import Settings
from app.db import migrate
from app.db.connection import asyncpg_dsn, is_outage
from app.db.embedded import EmbeddedPostgres
from app.db.gateway import Database
from app.db.scope import Scope
from app.db.store import Store
from app.engine.janitor import FallbackPoll, Janitor
from app.engine.leases import LeaseKeeper
from app.engine.listener import Listener
from app.engine.supervisor import Supervisor
from app.llm import Agent, ModelClient
from app.metrics import Metrics
from app.notify import AddressGuard, AppriseSender, WebhookSender, create_mailer
from app.workflows.delivery import Channels, DeliveryWorker
from app.workflows.runner import Runner
from app.workflows.service import WorkflowService

logger = logging.getLogger("app")


def process_owner() -> str:
    """This process's name on the leases it holds: host, pid and a nonce (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Readiness:
    database: bool
    migrations: bool
    listener: bool
    workers: bool

    @property
    def ready(self) -> bool:
        return self.database and self.migrations and self.listener and self.workers


class ServiceProcess:
    """The running parts of one process. The API calls `service`, `readiness()` and
    `metrics_text()`; the parts themselves are for the process's own wiring (and tests)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        listener: Listener,
        runner: Runner,
        delivery: DeliveryWorker,
        supervisor: Supervisor,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.listener = listener
        self.runner = runner
        self.delivery = delivery
        self.supervisor = supervisor
        self._schema_behind = migrate.revisions_before_head()
        self.service = WorkflowService(
            store=store, listener=listener, runner=runner, delivery=delivery, settings=settings
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, settings: Settings) -> AsyncIterator[ServiceProcess]:
        """Build and start every part; on exit, drain and hand back what is unfinished."""
        async with contextlib.AsyncExitStack() as stack:
            database_url = settings.database_url
            if database_url is None:
                embedded = await asyncio.to_thread(EmbeddedPostgres.start, settings.data_dir)
                stack.push_async_callback(asyncio.to_thread, embedded.stop)
                database_url = embedded.url
            # LISTEN and the migrations need a session of their own: a direct connection when
            # DATABASE_URL is a transaction-mode pooler (settings refuse one without it).
            direct_url = settings.listen_database_url or database_url
            database = Database.connect(
                database_url, connections=settings.db_pool_size, pooler=settings.database_pooler
            )
            stack.push_async_callback(database.close)
            if settings.migrate_on_start:
                await migrate.upgrade_database(direct_url)
            process = await cls._build(settings, database, direct_url, stack)
            try:
                yield process
            finally:
                await process._shut_down()

    @classmethod
    async def _build(
        cls,
        settings: Settings,
        database: Database,
        listen_url: str,
        stack: contextlib.AsyncExitStack,
    ) -> ServiceProcess:
        scope = Scope(
            owner=process_owner(),
            lease_seconds=settings.lease_seconds,
            notify_on_failure=settings.notify_on_failure,
            max_subscriptions_per_workflow=settings.max_subscriptions_per_workflow,
        )
        store = Store.of(database, scope)
        listener = Listener(asyncpg_dsn(listen_url))
        # Blocking: imports litellm and checks the configured model's route.
        model_client = await asyncio.to_thread(ModelClient, settings)
        stack.push_async_callback(model_client.aclose)
        agent = Agent(model_client)
        mailer = create_mailer(settings)
        metrics = Metrics()
        guard = AddressGuard(settings.webhook_allowed_networks)
        channels = Channels(
            webhook=WebhookSender(guard=guard, timeout_seconds=settings.webhook_timeout_seconds),
            apprise=AppriseSender(
                guard=guard,
                concurrency=settings.apprise_concurrency,
                timeout_seconds=settings.webhook_timeout_seconds,
            ),
        )
        delivery = DeliveryWorker(
            store=store,
            mailer=mailer,
            channels=channels,
            listener=listener,
            metrics=metrics,
            settings=settings,
        )
        runner = Runner(
            store=store,
            agent=agent,
            listener=listener,
            metrics=metrics,
            settings=settings,
            delivery=delivery,
        )
        supervisor = Supervisor()
        stack.push_async_callback(supervisor.stop)
        process = cls(
            settings=settings,
            store=store,
            listener=listener,
            runner=runner,
            delivery=delivery,
            supervisor=supervisor,
            metrics=metrics,
        )
        await process._start(mailer.description)
        return process

    async def _start(self, mail_description: str) -> None:
        settings, store, listener = self.settings, self.store, self.listener
        lease_keeper = LeaseKeeper(
            runs=store.runs,
            lease_seconds=settings.lease_seconds,
            run_worker=self.runner,
            delivery_worker=self.delivery,
            answering=lambda: self.service.answering_idempotent,
        )
        # Leases first, then wake-ups: after a long disconnection this process's leases may
        # have lapsed, and its own workers must not be the ones to grab them back twice.
        listener.on_connected(lease_keeper.renew_now)
        listener.on_reconnected(self.metrics.listener_reconnects.inc)
        listener.on_work(self.runner.wake)
        listener.on_work(self.delivery.wake)

        supervisor = self.supervisor
        supervisor.start("listener", listener.run)
        try:
            async with asyncio.timeout(10):
                await listener.wait_connected()
        except TimeoutError:
            logger.warning("the LISTEN connection is not up yet; polling covers until it is")
        supervisor.start("leases", lease_keeper.run)
        supervisor.start("janitor", Janitor(store=store, settings=settings).run)
        poll = FallbackPoll(
            store=store, listener=listener, interval_seconds=settings.poll_interval_seconds
        )
        supervisor.start("fallback-poll", poll.run)
        supervisor.start("runner", self.runner.run)
        supervisor.start("delivery", self.delivery.run)
        logger.info(
            "agent-notify %s ready: model %s, mail via %s, owner %s",
            __version__,
            settings.model,
            mail_description,
            store.scope.owner,
        )

    async def _shut_down(self) -> None:
        """Stop claiming, let in-flight work finish within the grace period, hand back the rest."""
        service = self.service
        service.begin_shutdown()  # already begun if a signal arrived; this starts it otherwise
        await self.supervisor.stop("runner", "delivery")
        loop = asyncio.get_running_loop()
        assert service.shutdown_deadline is not None
        await self.runner.drain(max(0.0, service.shutdown_deadline - loop.time()))
        await self.delivery.drain(max(0.0, service.shutdown_deadline - loop.time()))
        await self.delivery.close()
        try:
            async with asyncio.timeout(5):
                await self.store.runs.release_leases()
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or is_outage(exc)):
                raise
            logger.warning("could not hand back leases (%s); they expire on their own", exc)
        logger.info("agent-notify stopped")

    async def readiness(self) -> Readiness:
        """Database reachable and migrated (to this code's head or beyond: a newer replica may
        have migrated during a rolling deploy), listener connected, background tasks running."""
        try:
            revision = await self.store.reads.schema_revision()
            database, migrations = True, revision not in self._schema_behind
        except Exception:
            database = migrations = False
        return Readiness(
            database=database,
            migrations=migrations,
            listener=self.listener.connected,
            workers=self.supervisor.healthy,
        )

    async def metrics_text(self) -> bytes:
        """The Prometheus text of this process, with the tables' gauges read now."""
        figures = self.metrics
        counts = await self.store.reads.state_counts()
        for gauge, by_state in (
            (figures.workflows, counts.workflow),
            (figures.subscriptions, counts.subscription),
            (figures.claimable, counts.claimable),
        ):
            gauge.clear()
            for state, count in by_state.items():
                gauge.labels(state).set(count)
        figures.listener_waiters.set(self.listener.waiter_count)
        figures.inflight.labels("run").set(self.runner.inflight)
        figures.inflight.labels("delivery").set(self.delivery.inflight)
        return generate_latest(figures.registry)

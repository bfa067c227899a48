"""The aiohttp application: the one place that builds the parts and connects them.

`create_app` composes, and only composes: the channels (`_channels`), the services
(`_services`), and the routes (`_routes`). Nothing here does I/O; connecting, migrating and the
background workers start with the application (`cleanup_ctx`) and stop with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import telegram
from aiohttp import web

from bot import live
from bot.conversation.admission import Admission
from bot.conversation.deferred import Deferring
from bot.conversation.engine import Engine, LeadRules, people_hours
from bot.conversation.materials import Library
from bot.conversation.scripts import ScriptVersions, Validator
from bot.conversation.understanding import Understanding, from_file
from bot.core.channel import MediaSource, Sender
from bot.core.errors import Overloaded
from bot.core.model import Channel
from bot.core.scripts import Renderer
from bot.core.slots import Hours, KindWords
from bot.crm.duplicates import Duplicates
from bot.crm.leads import Records
from bot.crm.pipelines import Pipelines
from bot.crm.webhooks import Endpoints
from bot.delivery.dispatcher import Dispatcher
from bot.delivery.webhooks import WebhookDispatcher
from bot.desk.accounts import Accounts
from bot.desk.agenda import Agenda
from bot.desk.handoff import Desk
from bot.desk.transcripts import Transcripts
from bot.followup.calendar import Calendar
from bot.followup.planner import Followup
from bot.followup.scheduler import Scheduler
from bot.metrics import Metrics
from bot.reports.service import Reporting
from bot.settings import Settings
from bot.web import materials, ops
from bot.web.api import create_api
from bot.web.console import create_console
from bot.web.console import register_static as register_console_static
from bot.web.keys import (
    ACCOUNTS,
    AGENDA,
    DATABASE,
    DESK,
    DISPATCHER,
    DUPLICATES,
    ENDPOINTS,
    ENGINE,
    MATERIALS,
    MEDIA,
    METRICS,
    PIPELINES,
    RECORDS,
    REPORTS,
    SCHEDULER,
    SCRIPTS,
    SETTINGS,
    SIGNALS,
    TELEGRAM_BOT,
    UNDERSTANDING,
    WEBHOOKS,
)
from bot.web.middleware import errors, security_headers
from handlers.outbound import HttpPoster
from handlers.telegram import (
    WEBHOOK_PATH as TELEGRAM_WEBHOOK_PATH,
)
from handlers.telegram import (
    TelegramAdmin,
    TelegramInbound,
    TelegramMedia,
    TelegramPoller,
    TelegramSender,
    TelegramWebhook,
    describe_failure,
    make_bot,
)
from handlers.webchat import WebchatChannel, WebchatHub, WebchatSender
from handlers.whatsapp import STATUS_PATH as WHATSAPP_STATUS_PATH
from handlers.whatsapp import TwilioMedia, TwilioSender, WhatsappInbound, WhatsappWebhook
from intents.catalogue import DEFAULT_SCRIPTS
from intents.promises import load_promises
from storage import migrate
from storage.db import Database, is_conflict, is_unavailable
from storage.notify import Relay

log = logging.getLogger(__name__)

# The script the web chat page greets with before anyone has written.
WEBCHAT_GREETING = "webchat.greeting"
TWILIO_SENDER = web.AppKey("twilio_sender", TwilioSender)
WEBHOOK_POSTER = web.AppKey("webhook_poster", HttpPoster)
DEFERRING = web.AppKey("deferring", Deferring)
WEBCHAT = web.AppKey("webchat", WebchatChannel)


def create_app(
    settings: Settings,
    *,
    senders: Mapping[Channel, Sender] | None = None,
    telegram_polling: bool = False,
) -> web.Application:
    """The service, wired. `senders` replaces channel senders (tests point them at fakes);
    `telegram_polling` fetches Telegram updates with getUpdates instead of waiting for the
    webhook (development without a public URL).

    Raises:
        ConfigError, intents.CatalogueError: the scripts are broken (file, line, problem).
    """
    app = web.Application(client_max_size=settings.server.max_body_bytes, middlewares=[errors])
    app.on_response_prepare.append(security_headers)
    channels = _channels(settings, senders or {})
    _services(app, settings, channels)
    _routes(app, settings, channels, telegram_polling=telegram_polling)
    _announce_channels(settings)
    return app


@dataclass
class _Channels:
    """What the channels give the rest: senders, media sources, and their clients."""

    hub: WebchatHub
    senders: dict[Channel, Sender] = field(default_factory=dict)
    media: dict[Channel, MediaSource] = field(default_factory=dict)
    telegram: telegram.Bot | None = None
    twilio: TwilioSender | None = None


def _channels(settings: Settings, replaced: Mapping[Channel, Sender]) -> _Channels:
    channels = _Channels(hub=WebchatHub())
    channels.senders[Channel.WEBCHAT] = WebchatSender(channels.hub)
    if settings.whatsapp_enabled:
        twilio = settings.twilio
        channels.twilio = TwilioSender(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            sender=settings.whatsapp.from_,
            api_base_url=twilio.api_base_url,
            status_callback=settings.public_url + WHATSAPP_STATUS_PATH,
            timeout=settings.whatsapp.send_timeout,
        )
        channels.senders[Channel.WHATSAPP] = channels.twilio
        channels.media[Channel.WHATSAPP] = TwilioMedia(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            api_base_url=twilio.api_base_url,
            max_bytes=settings.media.max_bytes,
        )
    if settings.telegram.enabled:
        bot = telegram_bot(settings)
        channels.telegram = bot
        channels.media[Channel.TELEGRAM] = TelegramMedia(bot, max_bytes=settings.media.max_bytes)
        channels.senders[Channel.TELEGRAM] = TelegramSender(
            bot,
            per_chat_interval=settings.telegram.per_chat_interval,
            overall_per_second=settings.telegram.overall_per_second,
            resend_uncertain=settings.telegram.resend_uncertain,
        )
    channels.senders.update(replaced)
    return channels


def _services(app: web.Application, settings: Settings, channels: _Channels) -> None:
    db = Database(
        settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    metrics = Metrics()
    understanding = Understanding(
        from_file(settings.nlu.scripts_path, settings.business.phone_region, settings.sequences)
    )
    renderer = Renderer(understanding, settings.business.script_values(), load_promises())
    renderer.check((*understanding.intents, *required_scripts(settings)))
    library = Library(db, max_bytes=settings.materials.max_bytes)
    scripts = script_versions(settings, db, understanding, library)
    rules = LeadRules.from_settings(settings)

    signals = live.Signals()
    # A publication wakes every process's reload at once (on PostgreSQL, through the relay);
    # the poll of `nlu.reload_seconds` remains for a signal lost or a database without them.
    scripts.on_published = lambda: signals.changed(live.SCRIPTS)
    signals.forward(live.SCRIPTS, lambda _: scripts.nudge())
    db.active_materials.on_change = lambda: signals.changed(live.MATERIALS)
    signals.forward(live.MATERIALS, lambda _: db.active_materials.forget())
    # The web chat's streams wake through the signals, so a send by any process reaches them.
    channels.hub.publish = lambda session_id: signals.changed(live.webchat(session_id))
    signals.forward(live.WEBCHAT, channels.hub.wake)
    people = people_hours(settings)

    def sent(channel: Channel, recipient: str, conversation_id: int | None) -> None:
        if channel == Channel.WEBCHAT:
            channels.hub.notify(recipient)  # the open chat page collects it now
        if conversation_id is not None:
            signals.changed(live.conversation(conversation_id))  # delivery ticks

    dispatcher = Dispatcher(db, channels.senders, settings.outbox, metrics, on_sent=sent)
    calendar = Calendar(
        Hours(settings.scheduling.grid(), settings.business.tz), settings.scheduling.offer
    )
    followup = Followup(
        settings,
        renderer,
        rules.scoring,
        telegram=channels.telegram is not None,
        hours=people,
        sequences=understanding.sequences,  # the live version's: publishing changes them
    )
    app[SETTINGS] = settings
    app[DATABASE] = db
    app[METRICS] = metrics
    app[UNDERSTANDING] = understanding
    app[SCRIPTS] = scripts
    app[MEDIA] = channels.media
    app[DISPATCHER] = dispatcher
    app[ENGINE] = Engine(
        db,
        understanding,
        renderer,
        rules,
        calendar=calendar,
        followup=followup,
        kinds=KindWords(settings.scheduling.kind_words),
        metrics=metrics,
        signals=signals,
        admission=Admission(settings.database.admitted, settings.database.queue_timeout),
        assign_agents=settings.handoff.assign,
        on_commit=dispatcher.wake,
        public_url=settings.public_url,
    )
    app[MATERIALS] = library
    app[SCHEDULER] = Scheduler(db, followup, settings, metrics, on_commit=dispatcher.wake)
    pipelines = Pipelines(db, followup.sequences, rules.scoring, settings.pipeline)
    app[PIPELINES] = pipelines
    poster = HttpPoster()
    webhooks = WebhookDispatcher(db, poster, settings.outbox)
    app[WEBHOOK_POSTER] = poster
    app[WEBHOOKS] = webhooks
    app[ENDPOINTS] = Endpoints(db)
    app[DUPLICATES] = Duplicates(db, followup.sequences, rules.scoring.initial)
    app[RECORDS] = Records(
        db,
        pipelines,
        rules.scoring,
        tz=settings.business.tz,
        duplicates=app[DUPLICATES],
        labels=understanding.label,
    )
    app[AGENDA] = Agenda(
        db,
        followup,
        tz=settings.business.tz,
        stages=settings.pipeline.stages,
        calendar=calendar,
        pipelines=pipelines,
    )
    app[DESK] = Desk(
        db,
        signals=signals,
        sequences=followup.sequences,
        hours=people,
        sla=timedelta(minutes=settings.handoff.sla_minutes),
        phone_region=settings.business.phone_region,
        on_commit=dispatcher.wake,
        templates=settings.whatsapp.templates,
        business=settings.business.script_values(),
    )
    app[ACCOUNTS] = Accounts(db)
    app[REPORTS] = Reporting(db, settings)
    app[SIGNALS] = signals
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_scripts)
    if not db.is_sqlite:
        app.cleanup_ctx.append(_live_relay)
    if channels.telegram is not None:
        app[TELEGRAM_BOT] = channels.telegram
        app.cleanup_ctx.append(_telegram_session)
    if channels.twilio is not None:
        app[TWILIO_SENDER] = channels.twilio
        app.cleanup_ctx.append(_twilio_session)
    app.cleanup_ctx.append(_dispatching)
    app.cleanup_ctx.append(_scheduling)
    app.cleanup_ctx.append(_webhooks)


def required_scripts(settings: Settings) -> tuple[str, ...]:
    """Scripts the configuration names, besides the system ones and one per intent (those of
    the sequences are checked with the sequences: a version may carry its own)."""
    return (WEBCHAT_GREETING,) if settings.webchat.enabled else ()


def script_versions(
    settings: Settings,
    db: Database,
    understanding: Understanding | None,
    library: Library | None = None,
) -> ScriptVersions:
    """The scripts' versions; the configured file (or the packaged one) is version 1. Publishing
    checks the materials the replies promise against the library."""
    library = library or Library(db, max_bytes=settings.materials.max_bytes)
    return ScriptVersions(
        db,
        understanding,
        Validator(settings.business.phone_region, required_scripts(settings), settings.sequences),
        factory=(settings.nlu.scripts_path or DEFAULT_SCRIPTS).read_text(encoding="utf-8"),
        interval=settings.nlu.reload_seconds,
        library=library.all,
        promises=load_promises(),
    )


def _routes(
    app: web.Application, settings: Settings, channels: _Channels, *, telegram_polling: bool
) -> None:
    engine = app[ENGINE]
    ops.register(app)
    materials.register(app)
    if settings.webchat.enabled:

        def greeting() -> str:
            # Through the engine's renderer: scripts published later are what the page shows.
            return engine.renderer.render(WEBCHAT_GREETING, seed="webchat", values={}).text

        app[WEBCHAT] = WebchatChannel(
            engine,
            Transcripts(app[DATABASE]),
            channels.hub,
            business_name=settings.business.name,
            greeting=greeting,
            history_limit=settings.webchat.history_limit,
            reads_per_minute=settings.webchat.reads_per_minute,
            frame_ancestors=settings.webchat.frame_ancestors,
            forwarded_for=settings.server.forwarded_for,
        )
        app[WEBCHAT].register(app)
    if channels.telegram is not None:
        updates = TelegramWebhook(
            engine,
            TelegramInbound(
                settings.telegram.webhook_secret, phone_region=settings.business.phone_region
            ),
            channels.telegram,
        )
        app.on_shutdown.append(updates.finish)
        if settings.telegram.webhook_secret:
            updates.register(app)
        else:
            log.warning(
                "telegram_webhook_off",
                extra={"reason": "SEGUIBOT_TELEGRAM_WEBHOOK_SECRET is not set (polling only)"},
            )
        if telegram_polling:
            poller = TelegramPoller(updates, channels.telegram, transient=_transient)
            app.cleanup_ctx.append(_background(poller.run, "telegram-polling"))
    if channels.twilio is not None:
        whatsapp = WhatsappInbound(
            settings.twilio.auth_token, phone_region=settings.business.phone_region
        )
        # Twilio never delivers again: what cannot be handled now is stored, then handled.
        deferring = app[DEFERRING] = Deferring(
            engine, app[DATABASE], lease=settings.database.deferred_lease
        )
        WhatsappWebhook(deferring, whatsapp, settings.public_url).register(app)
        app.cleanup_ctx.append(_background(deferring.run, "deferred-messages"))
    app.add_subapp("/api/", create_api())
    if settings.console.enabled:
        app.router.add_get("/console", _to_console)
        app.add_subapp("/console/", create_console(settings, app[SIGNALS]))
        register_console_static(app)


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/console/")


def _transient(exc: BaseException) -> bool:
    """A database that is down or busy: try the same work again later."""
    return is_unavailable(exc) or is_conflict(exc) or isinstance(exc, Overloaded)


# --- Telegram, for the command line ------------------------------------------------------------


def telegram_bot(settings: Settings) -> telegram.Bot:
    return make_bot(
        settings.telegram.token,
        api_base_url=settings.telegram.api_base_url,
        file_base_url=settings.telegram.file_base_url,
        connections=settings.outbox.concurrency + 2,
    )


def telegram_admin(settings: Settings) -> TelegramAdmin:
    return TelegramAdmin(telegram_bot(settings))


def telegram_webhook_url(settings: Settings) -> str:
    return settings.public_url + TELEGRAM_WEBHOOK_PATH


# --- start-up and shutdown ---------------------------------------------------------------------


def _background(run: Callable[[], Any], name: str) -> Any:
    async def running(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return running


async def _database(app: web.Application) -> AsyncIterator[None]:
    db = app[DATABASE]
    try:
        if db.is_sqlite:
            # The embedded database is this process's own: create and migrate it on start.
            await migrate.upgrade(db)
        else:
            # A shared PostgreSQL is migrated on purpose (`seguibot db upgrade`), never by
            # whichever replica happens to start first.
            await migrate.ensure_current(db)
        console = app[SETTINGS].console
        await app[DESK].seed_lists(console.close_reasons, console.canned_replies)
        await app[PIPELINES].seed()
        yield
    finally:
        await db.dispose()


async def _scripts(app: web.Application) -> AsyncIterator[None]:
    # The live version of the scripts (the configured file becomes version 1 of an empty
    # database), then a poll that follows what any process publishes.
    scripts = app[SCRIPTS]
    await scripts.start()
    task = asyncio.create_task(scripts.watch(), name="scripts-reload")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _live_relay(app: web.Application) -> AsyncIterator[None]:
    """Live signals to and from the other processes on this PostgreSQL database."""
    signals = app[SIGNALS]
    relay = Relay(app[DATABASE].url, signals.wake)
    await relay.start()
    signals.relay_to(relay.publish)
    yield
    signals.relay_to(None)
    await relay.close()


async def _twilio_session(app: web.Application) -> AsyncIterator[None]:
    # twilio's aiohttp session must be made inside the running loop, and closed.
    sender = app[TWILIO_SENDER]
    await sender.start()
    yield
    await sender.close()


async def _telegram_session(app: web.Application) -> AsyncIterator[None]:
    bot = app[TELEGRAM_BOT]
    try:
        await bot.initialize()  # getMe: checks the token
        log.info("telegram_ready", extra={"bot": bot.username})
    except telegram.error.TelegramError as exc:
        # Never log the exception text: PTB puts the token in it. Sends will retry.
        log.error(
            "telegram_unavailable",
            extra={"error": type(exc).__name__, "reason": describe_failure(exc, bot.token)},
        )
    yield
    await bot.shutdown()


async def _dispatching(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER]
    dispatcher.start()
    yield
    # After the server stopped taking requests: let the sends in flight finish.
    await dispatcher.stop(timeout=app[SETTINGS].server.shutdown_timeout)


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    webhooks = app[WEBHOOKS]
    webhooks.start()
    yield
    await webhooks.stop()
    await app[WEBHOOK_POSTER].close()


async def _scheduling(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    scheduler.start()
    yield
    await scheduler.stop()


def _announce_channels(settings: Settings) -> None:
    """Say at start-up which channels are on, and for those off, what turns them on."""
    for channel, (on, how) in settings.channels().items():
        if on:
            log.info("channel_on", extra={"channel": channel})
        else:
            log.info("channel_off", extra={"channel": channel, "turn_on_with": how})

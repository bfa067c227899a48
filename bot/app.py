"""The aiohttp application: routes, start-up and shutdown. The only importer of `handlers`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import telegram
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from telegram.request import HTTPXRequest

from bot import api, metrics, nlu
from bot.agenda import Agenda
from bot.calendar import Calendar, Hours, KindWords
from bot.channel import Channel, MediaSource, Sender
from bot.engine import Engine, LeadRules
from bot.errors import (
    ConfigError,
    ConflictError,
    InvalidInput,
    NotFound,
    SchemaOutdated,
    WebhookRejected,
)
from bot.followup import Followup
from bot.handoff import Desk
from bot.keys import AGENDA, DATABASE, DESK, DISPATCHER, ENGINE, MEDIA, SCHEDULER, SETTINGS
from bot.outbox import Dispatcher
from bot.scheduler import Scheduler
from bot.scripts import Renderer
from bot.settings import Settings
from bot.transcripts import Transcripts
from handlers.http import error
from handlers.telegram import ALLOWED_UPDATES as TELEGRAM_UPDATES
from handlers.telegram import WEBHOOK_PATH as TELEGRAM_WEBHOOK_PATH
from handlers.telegram import (
    TelegramInbound,
    TelegramMedia,
    TelegramPoller,
    TelegramSender,
    TelegramWebhook,
)
from handlers.webchat import WebchatChannel, WebchatHub, WebchatSender
from handlers.whatsapp import STATUS_PATH as WHATSAPP_STATUS_PATH
from handlers.whatsapp import TwilioMedia, TwilioSender, WhatsappInbound, WhatsappWebhook
from storage import migrate
from storage.db import Database, DatabaseUnavailable, is_conflict, is_unavailable
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

TELEGRAM_BOT = web.AppKey("telegram_bot", telegram.Bot)
TWILIO_SENDER = web.AppKey("twilio_sender", TwilioSender)


def create_app(
    settings: Settings,
    *,
    senders: Mapping[Channel, Sender] | None = None,
    telegram_polling: bool = False,
) -> web.Application:
    """Wire the service together: the one place that builds and connects the parts.

    Nothing here does I/O; connecting, migrating and the background sender start with the
    application (`cleanup_ctx`) and stop with it. `senders` replaces channel senders (tests
    point them at fakes). `telegram_polling` fetches Telegram updates with getUpdates instead
    of waiting for the webhook (development without a public URL).

    Raises:
        ConfigError, intents.CatalogueError: the scripts are broken (file, line, problem).
    """
    db = Database(
        settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )
    catalogue, matcher = nlu.load(settings.nlu.scripts_path, settings.business.phone_region)
    renderer = Renderer(
        catalogue,
        {
            "producto": settings.business.product,
            "negocio": settings.business.name,
            "asesor": "un asesor",
        },
    )
    sequence_scripts = tuple(
        step.message or step.task or ""
        for sequence in settings.sequences.values()
        for step in sequence.steps
    )
    renderer.check((*catalogue.intents, *sequence_scripts))

    hub = WebchatHub()
    channel_senders: dict[Channel, Sender] = {Channel.WEBCHAT: WebchatSender(hub)}
    media: dict[Channel, MediaSource] = {}
    twilio = _twilio_sender(settings) if settings.whatsapp_enabled else None
    if twilio is not None:
        channel_senders[Channel.WHATSAPP] = twilio
        media[Channel.WHATSAPP] = TwilioMedia(
            account_sid=settings.twilio.account_sid,
            auth_token=settings.twilio.auth_token,
            api_base_url=settings.twilio.api_base_url,
            max_bytes=settings.media.max_bytes,
        )
    telegram_bot = _telegram_bot(settings) if settings.telegram.enabled else None
    if telegram_bot is not None:
        media[Channel.TELEGRAM] = TelegramMedia(telegram_bot, max_bytes=settings.media.max_bytes)
        channel_senders[Channel.TELEGRAM] = TelegramSender(
            telegram_bot,
            per_chat_interval=settings.telegram.per_chat_interval,
            overall_per_second=settings.telegram.overall_per_second,
            resend_uncertain=settings.telegram.resend_uncertain,
        )
    channel_senders.update(senders or {})

    def sent(channel: Channel, recipient: str) -> None:
        if channel == Channel.WEBCHAT:
            hub.notify(recipient)  # the open chat page collects it now

    dispatcher = Dispatcher(db, channel_senders, settings.outbox, on_sent=sent)
    followup = Followup(
        settings,
        renderer,
        notify_telegram=_telegram_notifier(telegram_bot) if telegram_bot is not None else None,
    )
    engine = Engine(
        db,
        matcher,
        renderer,
        LeadRules.from_settings(settings),
        calendar=Calendar(
            Hours(settings.scheduling, settings.business.tz), settings.scheduling.offer
        ),
        followup=followup,
        kinds=KindWords(settings.scheduling.kind_words),
        on_commit=dispatcher.wake,
    )
    scheduler = Scheduler(db, followup, settings, on_commit=dispatcher.wake)

    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[errors, api.authenticate]
    )
    app[SETTINGS] = settings
    app[MEDIA] = media
    app[DATABASE] = db
    app[ENGINE] = engine
    app[DISPATCHER] = dispatcher
    app[SCHEDULER] = scheduler
    app[AGENDA] = Agenda(db, followup, tz=settings.business.tz, stages=settings.pipeline.stages)
    app[DESK] = Desk(
        db,
        on_commit=dispatcher.wake,
        templates=settings.whatsapp.templates,
        business={"producto": settings.business.product, "negocio": settings.business.name},
    )
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_database)
    if telegram_bot is not None:
        app[TELEGRAM_BOT] = telegram_bot
        app.cleanup_ctx.append(_telegram_session)
    if twilio is not None:
        app[TWILIO_SENDER] = twilio
        app.cleanup_ctx.append(_twilio_session)
    app.cleanup_ctx.append(_dispatching)
    app.cleanup_ctx.append(_scheduling)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    if settings.webchat.enabled:
        WebchatChannel(
            engine,
            Transcripts(db),
            hub,
            business_name=settings.business.name,
            history_limit=settings.webchat.history_limit,
            reads_per_minute=settings.webchat.reads_per_minute,
            frame_ancestors=settings.webchat.frame_ancestors,
            forwarded_for=settings.server.forwarded_for,
        ).register(app)
    if telegram_bot is not None:
        telegram_updates = TelegramWebhook(
            engine,
            TelegramInbound(
                settings.telegram.webhook_secret, phone_region=settings.business.phone_region
            ),
            telegram_bot,
        )
        app.on_shutdown.append(telegram_updates.finish)
        if settings.telegram.webhook_secret:
            telegram_updates.register(app)
        else:
            log.warning(
                "telegram_webhook_off",
                extra={"reason": "SEGUIBOT_TELEGRAM_WEBHOOK_SECRET is not set (polling only)"},
            )
        if telegram_polling:
            app.cleanup_ctx.append(_polling(TelegramPoller(telegram_updates, telegram_bot)))
    if twilio is not None:
        whatsapp = WhatsappInbound(
            settings.twilio.auth_token, phone_region=settings.business.phone_region
        )
        WhatsappWebhook(engine, whatsapp, settings.public_url).register(app)
    api.register(app)
    _announce_channels(settings)
    return app


def _polling(poller: TelegramPoller) -> Any:
    async def polling(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(poller.run(), name="telegram-polling")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return polling


def telegram_webhook_url(settings: Settings) -> str:
    return settings.public_url + TELEGRAM_WEBHOOK_PATH


async def set_telegram_webhook(settings: Settings, *, drop_pending: bool = False) -> str:
    """Point Telegram at our webhook, with the secret token and the updates we handle.

    Raises:
        ConfigError: the token, the secret or the public URL is missing.
    """
    for value, name in (
        (settings.telegram.token, "SEGUIBOT_TELEGRAM_TOKEN"),
        (settings.telegram.webhook_secret, "SEGUIBOT_TELEGRAM_WEBHOOK_SECRET"),
        (settings.public_url, "SEGUIBOT_PUBLIC_URL"),
    ):
        if not value:
            raise ConfigError(f"{name} is required to set the Telegram webhook")
    url = telegram_webhook_url(settings)
    async with _telegram_bot(settings) as bot:
        await bot.set_webhook(
            url=url,
            secret_token=settings.telegram.webhook_secret,
            allowed_updates=list(TELEGRAM_UPDATES),
            drop_pending_updates=drop_pending,
        )
    return url


async def telegram_webhook(settings: Settings) -> str:
    """The URL Telegram currently delivers to ("" when none: polling is possible)."""
    async with _telegram_bot(settings) as bot:
        return (await bot.get_webhook_info()).url


async def delete_telegram_webhook(settings: Settings) -> None:
    async with _telegram_bot(settings) as bot:
        await bot.delete_webhook()


def _twilio_sender(settings: Settings) -> TwilioSender:
    return TwilioSender(
        account_sid=settings.twilio.account_sid,
        auth_token=settings.twilio.auth_token,
        sender=settings.whatsapp.from_,
        api_base_url=settings.twilio.api_base_url,
        status_callback=settings.public_url + WHATSAPP_STATUS_PATH,
        timeout=settings.whatsapp.send_timeout,
    )


async def _twilio_session(app: web.Application) -> AsyncIterator[None]:
    # twilio's aiohttp session must be made inside the running loop, and closed.
    sender = app[TWILIO_SENDER]
    await sender.start()
    yield
    await sender.close()


def _telegram_bot(settings: Settings) -> telegram.Bot:
    # PTB's default pool holds one connection; the outbox sends several at once.
    pool = settings.outbox.concurrency + 2
    base = settings.telegram.api_base_url
    return telegram.Bot(
        settings.telegram.token,
        base_url=base,
        # Files live beside the API: .../bot -> .../file/bot (a local Bot API server too).
        base_file_url=base.removesuffix("/bot") + "/file/bot",
        request=HTTPXRequest(connection_pool_size=pool, read_timeout=10, connect_timeout=5),
    )


async def _telegram_session(app: web.Application) -> AsyncIterator[None]:
    bot = app[TELEGRAM_BOT]
    try:
        await bot.initialize()  # getMe: checks the token
        log.info("telegram_ready", extra={"bot": bot.username})
    except telegram.error.TelegramError as exc:
        # Never log the exception text: PTB puts the token in it. Sends will retry.
        log.error("telegram_unavailable", extra={"error": type(exc).__name__})
    yield
    await bot.shutdown()


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
        yield
    finally:
        await db.dispose()


async def _scheduling(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    scheduler.start()
    yield
    await scheduler.stop()


def _telegram_notifier(bot: telegram.Bot) -> Any:
    async def notify(chat_id: int, text: str) -> None:
        await bot.send_message(chat_id=chat_id, text=text)

    return notify


async def _dispatching(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER]
    dispatcher.start()
    yield
    # After the server stopped taking requests: let the sends in flight finish.
    await dispatcher.stop(timeout=app[SETTINGS].server.shutdown_timeout)


def _announce_channels(settings: Settings) -> None:
    """Say at start-up which channels are on, and for those off, what turns them on."""
    channels = {
        "webchat": (settings.webchat.enabled, "webchat.enabled is false"),
        "telegram": (settings.telegram.enabled, "set SEGUIBOT_TELEGRAM_TOKEN to turn it on"),
        "whatsapp": (
            settings.whatsapp_enabled,
            "set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SEGUIBOT_WHATSAPP_FROM and "
            "SEGUIBOT_PUBLIC_URL to turn it on",
        ),
    }
    for channel, (on, why_off) in channels.items():
        if on:
            log.info("channel_on", extra={"channel": channel})
        else:
            log.info("channel_off", extra={"channel": channel, "reason": why_off})


# What every response says unless its route set a policy of its own (the chat page does): no
# content of any kind, no framing. Pages load their scripts and styles as files, never inline.
STRICT_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", STRICT_POLICY)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (no dependencies checked)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers and its schema is current."""
    db = request.app[DATABASE]
    try:
        await db.ping()
        await migrate.ensure_current(db)
    except SchemaOutdated as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    except Exception as exc:
        if not is_unavailable(exc) and not isinstance(exc, DatabaseUnavailable):
            raise
        return web.json_response(
            {"status": "unavailable", "reason": "database unreachable"}, status=503
        )
    return web.json_response({"status": "ready"})


async def prometheus(request: web.Request) -> web.Response:
    try:
        async with UnitOfWork(request.app[DATABASE]) as uow:
            counts = await uow.outbox.count_by_state()
        metrics.OUTBOX_PENDING.set(counts.get("pending", 0) + counts.get("sending", 0))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure becomes a status with a short JSON reason; nothing leaks a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        reason = exc.text if exc.text and exc.text != default else exc.reason.lower()
        _log_rejection(request, exc.status, reason)
        response = error(exc.status, reason)
        for name in ("Retry-After", "Allow", "WWW-Authenticate"):  # what the client acts on
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except WebhookRejected as exc:
        _log_rejection(request, exc.status, exc.reason)
        return error(exc.status, exc.reason)
    except InvalidInput as exc:
        return error(400, str(exc))
    except NotFound as exc:
        return error(404, str(exc))
    except ConflictError as exc:
        return error(409, str(exc))
    except Exception as exc:
        if is_conflict(exc):
            # Another transaction won a deadlock or serialization conflict; this one was rolled
            # back whole and can simply be sent again.
            log.info("request_conflict", extra={"path": request.path})
            response = error(503, "busy, try again")
            response.headers["Retry-After"] = "1"
            return response
        if is_unavailable(exc):
            log.warning(  # an outage, not a bug: no traceback per request
                "database_unavailable", extra={"path": request.path, "error": type(exc).__name__}
            )
            response = error(503, "database unavailable, try again later")
            response.headers["Retry-After"] = "5"
            return response
        log.exception("request_failed", extra={"path": request.path})
        return error(500, "internal error")


def _log_rejection(request: web.Request, status: int, reason: str) -> None:
    log.warning(
        "request_rejected", extra={"path": request.path, "status": status, "reason": reason}
    )

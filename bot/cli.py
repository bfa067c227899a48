"""The `seguibot` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web
from telegram.error import InvalidToken, TelegramError

from bot import logs
from bot.core.errors import ConfigError, SeguibotError
from bot.settings import Settings, load_settings
from intents import cli as intents_cli
from storage import migrate
from storage.db import Database

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except SeguibotError as exc:
        print(f"seguibot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except TelegramError as exc:
        # Never print PTB's message: for a rejected token it contains the token.
        hint = ": check SEGUIBOT_TELEGRAM_TOKEN" if isinstance(exc, InvalidToken) else ""
        print(f"seguibot: Telegram answered {type(exc).__name__}{hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`seguibot intents export | head`): not an error.
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seguibot", description="Sales follow-up bot for WhatsApp, Telegram and web chat."
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service (webhooks, web chat, API)")
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.set_defaults(func=_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(func=_db_upgrade)
    db.add_parser("current", help="show the schema revision").set_defaults(func=_db_current)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--session", help="continue a conversation (default: a new one)")
    chat.set_defaults(func=_chat)

    queue = commands.add_parser("queue", help="conversations waiting for an agent")
    queue.set_defaults(func=_queue)

    agents = commands.add_parser("agents", help="agents and their API tokens").add_subparsers(
        metavar="ACTION"
    )
    add = agents.add_parser("add", help="add an agent and print their API token")
    add.add_argument("name")
    add.add_argument("--email")
    add.add_argument(
        "--admin",
        action="store_true",
        help="a coordinator: manages the team, the console's lists and sees the audit log",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a console password from standard input (10 characters or more)",
    )
    add.set_defaults(func=_agents_add)
    add.add_argument(
        "--telegram-chat-id", type=int, help="the agent's Telegram chat, for their reminders"
    )
    agents.add_parser("list", help="list agents").set_defaults(func=_agents_list)

    appointments = commands.add_parser("appointments", help="appointments of today or the week")
    appointments.add_argument("--week", action="store_true", help="the next 7 days")
    appointments.set_defaults(func=_appointments)

    jobs = commands.add_parser("jobs", help="scheduled actions: what is due next, what failed")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=_jobs)

    telegram = commands.add_parser("telegram", help="Telegram webhook and polling").add_subparsers(
        metavar="ACTION"
    )
    set_webhook = telegram.add_parser(
        "set-webhook", help="point Telegram at SEGUIBOT_PUBLIC_URL/webhooks/telegram"
    )
    set_webhook.add_argument(
        "--drop-pending-updates", action="store_true", help="discard updates waiting at Telegram"
    )
    set_webhook.set_defaults(func=_telegram_set_webhook)
    telegram.add_parser("delete-webhook", help="stop webhook delivery").set_defaults(
        func=_telegram_delete_webhook
    )
    poll = telegram.add_parser(
        "poll", help="serve, fetching Telegram updates by long polling (no public URL needed)"
    )
    poll.add_argument("--host", help="address to listen on (default: server.host)")
    poll.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    poll.add_argument(
        "--delete-webhook",
        action="store_true",
        help="remove a webhook that is set (polling and a webhook never run at once)",
    )
    poll.set_defaults(func=_telegram_poll)

    intents_cli.add_subcommands(commands)
    return parser


def _settings() -> Settings:
    settings = load_settings()
    logs.configure(settings.logging.level, json_format=settings.logging.json_format)
    return settings


def _serve(args: argparse.Namespace, *, telegram_polling: bool = False) -> int:
    from bot.app import create_app

    settings = _settings()
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    app = create_app(settings, telegram_polling=telegram_polling)
    log.info("serving", extra={"host": host, "port": port, "sqlite": settings.database.is_sqlite})
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
        print=lambda _: None,
        handle_signals=True,
    )
    return 0


def _telegram_on(settings: Settings) -> None:
    if not settings.telegram.enabled:
        raise ConfigError("Telegram is off: set SEGUIBOT_TELEGRAM_TOKEN")


def _telegram_set_webhook(args: argparse.Namespace) -> int:
    from bot.app import telegram_admin, telegram_webhook_url

    settings = _settings()
    _telegram_on(settings)
    for value, name in (
        (settings.telegram.webhook_secret, "SEGUIBOT_TELEGRAM_WEBHOOK_SECRET"),
        (settings.public_url, "SEGUIBOT_PUBLIC_URL"),
    ):
        if not value:
            raise ConfigError(f"{name} is required to set the Telegram webhook")
    url = telegram_webhook_url(settings)
    admin = telegram_admin(settings)
    asyncio.run(
        admin.set_webhook(
            url, secret=settings.telegram.webhook_secret, drop_pending=args.drop_pending_updates
        )
    )
    print(f"Telegram webhook set: {url}")
    return 0


def _telegram_delete_webhook(args: argparse.Namespace) -> int:
    from bot.app import telegram_admin

    settings = _settings()
    _telegram_on(settings)
    asyncio.run(telegram_admin(settings).delete_webhook())
    print("Telegram webhook deleted")
    return 0


def _telegram_poll(args: argparse.Namespace) -> int:
    from bot.app import telegram_admin

    settings = _settings()
    _telegram_on(settings)
    current = asyncio.run(telegram_admin(settings).webhook())
    if current and not args.delete_webhook:
        raise ConfigError(
            f"a Telegram webhook is set ({current}); polling and a webhook never run at once: "
            "pass --delete-webhook, or run `seguibot telegram delete-webhook` first"
        )
    if current:
        asyncio.run(telegram_admin(settings).delete_webhook())
    return _serve(args, telegram_polling=True)


def _database(settings: Settings) -> Database:
    return Database(settings.database.url, pool_size=2)


def _db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()

    async def run() -> str | None:
        db = _database(settings)
        try:
            await migrate.upgrade(db)
            return await migrate.current_revision(db)
        finally:
            await db.dispose()

    print(f"schema at {asyncio.run(run())}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    settings = _settings()

    async def run() -> str | None:
        db = _database(settings)
        try:
            return await migrate.current_revision(db)
        finally:
            await db.dispose()

    current, head = asyncio.run(run()), migrate.head_revision()
    print(f"schema at {current or 'nothing'}; code needs {head}")
    return 0 if current == head else 1


def _queue(args: argparse.Namespace) -> int:
    from bot.desk.handoff import Desk

    settings = _settings()

    async def run() -> int:
        db = _database(settings)
        try:
            await migrate.ensure_current(db)
            entries = await Desk(db).queue()
        finally:
            await db.dispose()
        if not entries:
            print("No hay conversaciones en espera.")
            return 0
        print(
            f"{'conv':>6}  {'prioridad':>9}  {'espera':>8}  {'canal':<9} {'motivo':<16} prospecto"
        )
        for e in entries:
            wait = f"{e.waiting_seconds // 60}m{e.waiting_seconds % 60:02d}s"
            print(
                f"{e.conversation_id:>6}  {e.priority:>9}  {wait:>8}  {e.channel:<9} "
                f"{e.reason:<16} {e.lead_name or '(sin nombre)'} [{e.tier}]"
            )
        return 0

    return asyncio.run(run())


def _agents_add(args: argparse.Namespace) -> int:
    from bot.desk.accounts import hash_password
    from bot.desk.handoff import Desk

    settings = _settings()

    password_hash = None
    if args.password_stdin:
        if not args.email:
            raise ConfigError("--password-stdin needs --email: agents sign in with their e-mail")
        password_hash = hash_password(sys.stdin.readline().rstrip("\n"))

    async def run() -> str:
        db = _database(settings)
        try:
            await migrate.ensure_current(db)
            agent, token = await Desk(db).add_agent(
                args.name,
                email=args.email,
                admin=args.admin,
                telegram_chat_id=args.telegram_chat_id,
                password_hash=password_hash,
            )
        finally:
            await db.dispose()
        return f"agent {agent.id} ({agent.role}): {agent.name}\ntoken (shown once): {token}"

    print(asyncio.run(run()))
    return 0


def _appointments(args: argparse.Namespace) -> int:
    from bot.core.booking import KIND_WORDS
    from bot.core.slots import spanish_moment
    from storage.uow import UnitOfWork

    settings = _settings()
    tz = settings.business.tz

    async def run() -> None:
        db = _database(settings)
        try:
            await migrate.ensure_current(db)
            now = datetime.now(tz)
            local = now.replace(hour=0, minute=0, second=0, microsecond=0)
            end = local + timedelta(days=7 if args.week else 1)
            async with UnitOfWork(db) as uow:
                found = await uow.appointments.between(local, end)
                if not found:
                    print("No hay citas " + ("esta semana." if args.week else "hoy."))
                for appointment in found:
                    lead = await uow.leads.get(appointment.lead_id)
                    agent = (
                        await uow.agents.get(appointment.agent_id) if appointment.agent_id else None
                    )
                    when = spanish_moment(appointment.starts_at, tz, now)
                    kind = KIND_WORDS.get(appointment.kind, appointment.kind).split(" ")[-1]
                    print(
                        f"{when:<42} {kind:<9}"
                        f" {(lead.name if lead else None) or '(sin nombre)':<24}"
                        f" {agent.name if agent else 'equipo'}"
                    )
        finally:
            await db.dispose()

    asyncio.run(run())
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from storage.uow import UnitOfWork

    settings = _settings()

    async def run() -> None:
        db = _database(settings)
        try:
            await migrate.ensure_current(db)
            async with UnitOfWork(db) as uow:
                upcoming = await uow.actions.upcoming(args.limit)
                failed = await uow.actions.failed(args.limit)
        finally:
            await db.dispose()
        print("Próximas:" if upcoming else "Nada programado.")
        for action in upcoming:
            print(f"  {action.due_at:%Y-%m-%d %H:%M} UTC  {action.kind:<16} lead {action.lead_id}")
        if failed:
            print("Fallidas:")
        for action in failed:
            print(
                f"  #{action.id} {action.kind:<16} {action.attempts} intentos: {action.last_error}"
            )

    asyncio.run(run())
    return 0


def _agents_list(args: argparse.Namespace) -> int:
    from storage.uow import UnitOfWork

    settings = _settings()

    async def run() -> None:
        db = _database(settings)
        try:
            async with UnitOfWork(db) as uow:
                for agent in await uow.agents.all():
                    state = "active" if agent.active else "inactive"
                    print(f"{agent.id:>4}  {agent.role:<6} {state:<8} {agent.name}")
        finally:
            await db.dispose()

    asyncio.run(run())
    return 0


def _chat(args: argparse.Namespace) -> int:
    """The web chat's conversation, in the terminal, against the same database."""
    from bot.app import create_app
    from bot.core.channel import Channel, InboundMessage
    from bot.desk.transcripts import Transcripts
    from bot.web.keys import DATABASE, ENGINE

    settings = _settings()
    logging.getLogger().setLevel(logging.WARNING)  # the conversation is the output here
    session = args.session or f"terminal-{getpass.getuser()}-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()  # start-up (migrations, outbox) without listening on a port
        engine, transcripts = app[ENGINE], Transcripts(app[DATABASE])
        seen = 0

        async def show_later() -> None:
            nonlocal seen
            while True:
                await asyncio.sleep(1)
                lines = await transcripts.sent_to_lead(
                    Channel.WEBCHAT, session, after_id=seen, limit=50
                )
                for line in lines:
                    print(f"\r{line.author}> {line.text}\ntú> ", end="", flush=True)
                    seen = max(seen, line.id)

        print(f"Sesión {session}. Escribe tu mensaje (Ctrl+D para salir).")
        watcher = asyncio.create_task(show_later())
        try:
            while True:
                text = await asyncio.to_thread(_prompt)
                if text is None:
                    break
                outcome = await engine.receive(
                    InboundMessage(
                        channel=Channel.WEBCHAT,
                        sender_id=session,
                        message_id=f"{session}:{uuid.uuid4().hex}",
                        text=text,
                        sent_at=datetime.now(UTC),
                        reply_inline=True,
                    )
                )
                for reply in outcome.replies:
                    print(f"bot> {reply.text}")
                    seen = max(seen, reply.id)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await runner.cleanup()

    asyncio.run(run())
    return 0


def _prompt() -> str | None:
    try:
        return input("tú> ")
    except EOFError:
        print()
        return None

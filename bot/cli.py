"""The `seguibot` command (also `python -m bot`).

Languages: what agents read (`queue`, `appointments`, `jobs`, `agents list`) and the terminal
chat are Spanish; everything for whoever runs the service (help, errors, `serve`, `db`,
`telegram`, `agents` changes) is English, like config.yaml and the logs. Every time shown is in
the business time zone, with its name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import getpass
import io
import logging
import multiprocessing
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.engine import make_url

from bot import heap, logs
from bot.core.errors import ConfigError, SeguibotError, Unreachable
from bot.settings import Settings, load_settings
from intents import cli as intents_cli
from storage import migrate
from storage.db import Database, DatabaseUnavailable

if TYPE_CHECKING:
    from bot.conversation.scripts import ScriptVersions
    from storage.models import ScriptVersion

T = TypeVar("T")
# Exit codes: 1 for a refusal or a wrong setting, 2 when the database or an API cannot be
# reached (or there is no database yet).
UNREACHABLE_EXIT = 2

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except Unreachable as exc:
        print(f"seguibot: {exc}", file=sys.stderr)
        return UNREACHABLE_EXIT
    except SeguibotError as exc:
        print(f"seguibot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`seguibot intents export | head`): not an error.
        sys.stderr.close()
        return 0


AGENT_REF = "AGENT"
AGENT_REF_HELP = "the agent's id, e-mail or name (see `seguibot agents list`)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seguibot",
        description="Sales follow-up bot for WhatsApp, Telegram and web chat.",
        epilog="Every command reads config.yaml, the file named by SEGUIBOT_CONFIG and the "
        "environment (README: Configuration); the database is DATABASE_URL, or SQLite in "
        "data_dir.",
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the service (webhooks, web chat, API); creates and migrates an SQLite database",
    )
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT) and the database; >1 needs PostgreSQL",
    )
    serve.set_defaults(func=_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    db.add_parser(
        "upgrade", help="create the database if it is SQLite, and apply pending migrations"
    ).set_defaults(func=_db_upgrade)
    db.add_parser(
        "current", help="show where the database is and its schema revision"
    ).set_defaults(func=_db_current)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal, as a prospect")
    chat.add_argument("--session", help="continue a conversation (default: a new one)")
    chat.set_defaults(func=_chat)

    queue = commands.add_parser("queue", help="conversations waiting for an agent (Spanish)")
    queue.set_defaults(func=_queue)

    agents = commands.add_parser(
        "agents", help="agents: add, list, rename, deactivate, remove, replace a token"
    ).add_subparsers(metavar="ACTION")
    add = agents.add_parser("add", help="add an agent and print their API token (shown once)")
    add.add_argument("name", help="unique, in any case")
    add.add_argument("--email", help="unique, in any case")
    add.add_argument(
        "--admin",
        action="store_true",
        help="a coordinator: besides what agents do, manages the team in the console "
        "(invites, roles, capacity, deactivation), its canned replies and close reasons, and "
        "reads the audit log; reads the outbox and scheduled jobs (/api/outbox, /api/jobs); "
        "replies in and closes any agent's conversation, dismisses a waiting handoff, and "
        "sees and completes everyone's tasks",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a console password from standard input (10 characters or more)",
    )
    add.add_argument(
        "--telegram-chat-id", type=int, help="the agent's Telegram chat, for their reminders"
    )
    add.set_defaults(func=_agents_add)
    agents.add_parser("list", help="list agents (Spanish)").set_defaults(func=_agents_list)
    rename = agents.add_parser("rename", help="change an agent's name")
    rename.add_argument("agent", metavar=AGENT_REF, help=AGENT_REF_HELP)
    rename.add_argument("name", help="the new name (unique, in any case)")
    rename.set_defaults(func=_agents_rename)
    deactivate = agents.add_parser(
        "deactivate",
        help="stop an agent: their token stops working, they get no new appointments, and "
        "the conversations they hold go back to the queue; their history stays",
    )
    deactivate.add_argument("agent", metavar=AGENT_REF, help=AGENT_REF_HELP)
    deactivate.set_defaults(func=_agents_deactivate)
    activate = agents.add_parser("activate", help="let a deactivated agent work again")
    activate.add_argument("agent", metavar=AGENT_REF, help=AGENT_REF_HELP)
    activate.set_defaults(func=_agents_activate)
    remove = agents.add_parser(
        "remove",
        help="delete an agent nothing refers to yet (added by mistake); "
        "one with history is deactivated instead",
    )
    remove.add_argument("agent", metavar=AGENT_REF, help=AGENT_REF_HELP)
    remove.set_defaults(func=_agents_remove)
    token = agents.add_parser(
        "token", help="replace an agent's API token (a lost one): prints the new one, once"
    )
    token.add_argument("agent", metavar=AGENT_REF, help=AGENT_REF_HELP)
    token.set_defaults(func=_agents_token)

    appointments = commands.add_parser(
        "appointments", help="appointments of today or the week (Spanish)"
    )
    appointments.add_argument("--week", action="store_true", help="the next 7 days")
    appointments.set_defaults(func=_appointments)

    jobs = commands.add_parser(
        "jobs", help="scheduled actions: what is due next, what failed (Spanish)"
    )
    jobs.add_argument("--limit", type=int, default=20, help="at most this many of each")
    jobs.set_defaults(func=_jobs)

    leads = commands.add_parser("leads", help="lead records: import, export, merge").add_subparsers(
        metavar="ACTION"
    )
    imports = leads.add_parser(
        "import", help="add leads from a CSV file (name, phone, email, source, stage, tags, ...)"
    )
    imports.add_argument("file", metavar="FILE")
    imports.add_argument(
        "--dry-run", action="store_true", help="only check: report every bad row, add nothing"
    )
    imports.set_defaults(func=_leads_import)
    exports = leads.add_parser("export", help="write every lead to a CSV file")
    exports.add_argument("file", metavar="FILE")
    exports.set_defaults(func=_leads_export)
    merge = leads.add_parser(
        "merge", help="merge lead B into lead A (both histories kept; B's id is gone)"
    )
    merge.add_argument("keep", metavar="A", type=int)
    merge.add_argument("other", metavar="B", type=int)
    merge.set_defaults(func=_leads_merge)

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

    report = commands.add_parser(
        "report", help="sales figures of a day, week or month, with recommended actions (Spanish)"
    )
    report.add_argument("period", choices=sorted(_REPORT_KINDS), help="the period's length")
    report.add_argument(
        "--date",
        type=_iso_date,
        help="a day in the period, YYYY-MM-DD (default: yesterday, business time zone)",
    )
    report.add_argument("--format", choices=("text", "json", "csv"), default="text")
    report.set_defaults(func=_report)
    scripts = commands.add_parser(
        "scripts",
        help="the scripts' versions in the database: export, import, list, roll back",
    ).add_subparsers(metavar="ACTION")
    export = scripts.add_parser(
        "export",
        help="write the live version's YAML to FILE (- for stdout), its follow-up sequences "
        "included (config.yaml's when the version has none of its own)",
    )
    export.add_argument("file", metavar="FILE")
    export.add_argument("--version", type=int, help="another version than the live one")
    export.set_defaults(func=_scripts_export)
    load = scripts.add_parser(
        "import",
        help="validate FILE (the YAML of intents/scripts/es.yaml, with `sequences:` or not) and "
        "publish it as the new live version; every running process switches to it within "
        "seconds",
    )
    load.add_argument("file", metavar="FILE")
    load.add_argument("--comment", default="", help="why (shown in the versions list)")
    load.set_defaults(func=_scripts_import)
    scripts.add_parser("versions", help="list the versions, newest (live) first").set_defaults(
        func=_scripts_versions
    )
    rollback = scripts.add_parser(
        "rollback", help="publish version N's text again, as a new live version"
    )
    rollback.add_argument("number", metavar="N", type=int)
    rollback.set_defaults(func=_scripts_rollback)

    intents_cli.add_subcommands(commands)
    return parser


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2026-11-30") from None


def _settings() -> Settings:
    settings = load_settings()
    logs.configure(settings.logging.level, json_format=settings.logging.json_format)
    return settings


# --- the database -------------------------------------------------------------------------------

# What to look at, by what went wrong (DatabaseUnavailable.kind).
_CHECK = {
    "network": "check that the server is running there and the host and port in DATABASE_URL",
    "login": "check the user and password in DATABASE_URL",
    "database": "check the database name in DATABASE_URL, or create that database",
    "file": "check that the folder exists and this user may write there (data_dir)",
    "other": "check DATABASE_URL and that the server answers",
}


async def _open(settings: Settings, *, create: bool = False) -> Database:
    """The database, once it answered a trivial query.

    `create`: an SQLite file (and data_dir) may be made; otherwise a missing file is an
    error that says how to make one, and nothing is created.

    Raises:
        Unreachable: one line that says what failed, where (never the password), and what
            to check.
    """
    config = settings.database
    path = config.sqlite_path
    if path is not None:
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Unreachable(
                    f"cannot create the folder {path.parent} for the database ({exc.strerror}): "
                    f"{_CHECK['file']}"
                ) from None
        elif not path.exists():
            raise Unreachable(
                f"there is no database at {path} (data_dir is {settings.data_dir}): create it "
                "with `seguibot db upgrade`, or start the service with `make run`; another "
                "database is chosen with DATABASE_URL or SEGUIBOT_DATA_DIR"
            )
    db = Database(config.url, pool_size=2)
    try:
        await db.ping(timeout=15)
    except DatabaseUnavailable as exc:
        await db.dispose()
        reason = exc.reason
        password = _password(config.url)
        if password:
            reason = reason.replace(password, "***")
        raise Unreachable(
            f"cannot use the database ({config.where()}): {reason}; {_CHECK[exc.kind]}"
        ) from None
    return db


def _password(url: str) -> str | None:
    return make_url(url).password


def _with_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[T]],
    *,
    create: bool = False,
    current: bool = True,
) -> T:
    """Open the database, check its schema (`current`), do `work`, close it."""

    async def run() -> T:
        db = await _open(settings, create=create)
        try:
            if current:
                await migrate.ensure_current(db)
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


# --- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, *, telegram_polling: bool = False) -> int:
    settings = _settings()
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > 1 and settings.database.is_sqlite:
        raise ConfigError(
            "--workers needs PostgreSQL (DATABASE_URL): the embedded SQLite file belongs to "
            "one process"
        )

    _ready_to_serve(settings)
    if workers == 1:
        _serve_one(settings, host, port, telegram_polling=telegram_polling, banner=True)
        return 0
    return _serve_many(workers, host, port, telegram_polling=telegram_polling)


def _serve_one(
    settings: Settings,
    host: str,
    port: int,
    *,
    telegram_polling: bool,
    banner: bool,
    reuse_port: bool | None = None,
) -> None:
    from bot.app import create_app

    app = create_app(settings, telegram_polling=telegram_polling)
    # Once started (after the app's own start-up: the scripts loaded, the matcher trained) and
    # after each change of scripts, the garbage collector stops walking what the service holds
    # for good (bot/heap.py). Only here: a process that serves, not a command or a test.
    app.on_startup.append(_settled)

    def started(_: str) -> None:
        log.info(
            "serving", extra={"host": host, "port": port, "sqlite": settings.database.is_sqlite}
        )
        if banner:
            print(_banner(settings, host, port), flush=True)

    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
        print=started,
        handle_signals=True,
        reuse_port=reuse_port,
    )


async def _settled(app: web.Application) -> None:
    from bot.web.keys import UNDERSTANDING

    heap.settle()
    app[UNDERSTANDING].on_replaced = heap.settle


def _worker(host: str, port: int, index: int, telegram_polling: bool) -> None:
    """One of `serve --workers N`, in its own process: the same app on the same port."""
    settings = _settings()
    with contextlib.suppress(KeyboardInterrupt):
        _serve_one(
            settings,
            host,
            port,
            # Only one process polls Telegram (Telegram allows one getUpdates at a time).
            telegram_polling=telegram_polling and index == 0,
            banner=index == 0,
            reuse_port=True,
        )


def _serve_many(workers: int, host: str, port: int, *, telegram_polling: bool) -> int:
    """N processes listening on one port (SO_REUSEPORT: the kernel spreads connections), each
    a whole service on the shared PostgreSQL. The outbox, the scheduler and stored WhatsApp
    messages are claimed with SKIP LOCKED and leases, so the processes share that work safely;
    live signals reach every process through LISTEN/NOTIFY. SIGTERM or Ctrl+C stops them all."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker, args=(host, port, n, telegram_polling), name=f"seguibot-worker-{n}"
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving_workers", extra={"workers": workers, "port": port})
    failed = 0
    for process in processes:
        process.join()
        if process.exitcode:
            failed += 1
            stop(signal.SIGTERM, None)  # one died: stop the rest rather than limp on
    return 1 if failed else 0


def _ready_to_serve(settings: Settings) -> None:
    """Fail here, in one line, before anything says it is serving: SQLite is this process's
    own and is migrated as the app starts; a shared PostgreSQL must already be migrated."""

    async def ready(db: Database) -> None:
        if not db.is_sqlite:
            await migrate.ensure_current(db)

    _with_database(settings, ready, create=True, current=False)


def _banner(settings: Settings, host: str, port: int) -> str:
    """What an operator needs to know once the service listens, in plain words."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    base = f"http://{shown}:{port}"
    lines = [f"Seguibot is serving on {base} (stop with Ctrl+C)."]
    for name, (on, how) in settings.channels().items():
        if on and name == "web chat":
            state = f"on: open {base}/chat"
            if settings.public_url:
                state += f" (public: {settings.public_url}/chat)"
        elif on:
            state = "on"
        else:
            state = f"off; turn it on with {how}"
        lines.append(f"  {name + ':':<10} {state}")
    if settings.console.enabled:
        lines.append(
            f"  {'console:':<10} {base}/console/ for agents (the first: `seguibot agents add "
            "NAME --email E --admin --password-stdin`)"
        )
    lines.append(f"  {'database:':<10} {settings.database.where()}")
    business = settings.business
    lines.append(
        f"  {'business:':<10} {business.name}, selling {business.product!r}, "
        f"times in {business.timezone}"
    )
    if business.name == "Seguibot":  # the product's name: the business is not set yet
        lines.append(
            "  Make it yours: set business.name, business.product, business.plans and "
            "scheduling.hours (README: Configure your business)."
        )
    return "\n".join(lines)


# --- Telegram ---------------------------------------------------------------------------------


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


# --- db ---------------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()

    async def upgrade(db: Database) -> str | None:
        await migrate.upgrade(db)
        return await migrate.current_revision(db)

    revision = _with_database(settings, upgrade, create=True, current=False)
    print(f"schema at {revision}: {settings.database.where()}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    settings = _settings()
    current = _with_database(settings, migrate.current_revision, current=False)
    head = migrate.head_revision()
    print(f"{settings.database.where()}: schema at {current or 'nothing'}; code needs {head}")
    if current != head:
        print("apply the migrations with `seguibot db upgrade`", file=sys.stderr)
    return 0 if current == head else 1


# --- what agents read (Spanish) -----------------------------------------------------------------


def _when(at: datetime, tz: ZoneInfo) -> str:
    """ "2026-05-01 17:00 (America/Mexico_City)": a time as people here read it."""
    return f"{at.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})"


def _queue(args: argparse.Namespace) -> int:
    from bot.desk.handoff import Desk, QueueEntry

    settings = _settings()

    async def read(db: Database) -> list[QueueEntry]:
        return await Desk(db).queue()

    entries = _with_database(settings, read)
    if not entries:
        print("No hay conversaciones en espera.")
        return 0
    print(f"{'conv':>6}  {'prioridad':>9}  {'espera':>8}  {'canal':<9} {'motivo':<16} prospecto")
    for e in entries:
        wait = f"{e.waiting_seconds // 60}m{e.waiting_seconds % 60:02d}s"
        print(
            f"{e.conversation_id:>6}  {e.priority:>9}  {wait:>8}  {e.channel:<9} "
            f"{e.reason:<16} {e.lead_name or '(sin nombre)'} [{e.tier}]"
        )
    return 0


def _appointments(args: argparse.Namespace) -> int:
    from bot.core.booking import KIND_WORDS
    from bot.core.slots import spanish_moment
    from storage.uow import UnitOfWork

    settings = _settings()
    tz = settings.business.tz

    async def show(db: Database) -> None:
        now = datetime.now(tz)
        local = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = local + timedelta(days=7 if args.week else 1)
        async with UnitOfWork(db) as uow:
            found = await uow.appointments.between(local, end)
            if not found:
                print("No hay citas " + ("esta semana." if args.week else "hoy."))
            for appointment in found:
                lead = await uow.leads.get(appointment.lead_id)
                agent = await uow.agents.get(appointment.agent_id) if appointment.agent_id else None
                when = f"{spanish_moment(appointment.starts_at, tz, now)} ({tz.key})"
                kind = KIND_WORDS.get(appointment.kind, appointment.kind).split(" ")[-1]
                print(
                    f"{when:<62} {kind:<9}"
                    f" {(lead.name if lead else None) or '(sin nombre)':<24}"
                    f" {agent.name if agent else 'equipo'}"
                )

    _with_database(settings, show)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from storage.models import ScheduledAction
    from storage.uow import UnitOfWork

    settings = _settings()
    tz = settings.business.tz

    async def read(db: Database) -> tuple[list[ScheduledAction], list[ScheduledAction]]:
        async with UnitOfWork(db) as uow:
            return await uow.actions.upcoming(args.limit), await uow.actions.failed(args.limit)

    upcoming, failed = _with_database(settings, read)
    print("Próximas:" if upcoming else "Nada programado.")
    for action in upcoming:
        print(f"  {_when(action.due_at, tz)}  {action.kind:<16} prospecto {action.lead_id}")
    if failed:
        print("Fallidas:")
    for action in failed:
        when = _when(action.fired_at, tz) if action.fired_at else "-"
        print(
            f"  #{action.id} {when}  {action.kind:<16} {action.attempts} intentos: "
            f"{action.last_error}"
        )
    return 0


# --- reports ------------------------------------------------------------------------------------

_REPORT_KINDS = {"daily": "day", "weekly": "week", "monthly": "month"}


def _report(args: argparse.Namespace) -> int:
    from bot.core.model import utcnow
    from bot.core.report import PeriodKind, period
    from bot.reports.figures import Figures
    from bot.reports.render import all_csv, to_json, to_text

    settings = _settings()
    tz = settings.business.tz
    now = utcnow()
    day = args.date or (now.astimezone(tz).date() - timedelta(days=1))
    current = period(PeriodKind(_REPORT_KINDS[args.period]), day, tz)
    figures = Figures(settings)

    async def read(db: Database) -> dict[str, Any]:
        return await figures.report_from(db, current, now)

    report = _with_database(settings, read)
    if args.format == "json":
        print(to_json(report))
    elif args.format == "csv":
        print(all_csv(report, figures.texts), end="")
    else:
        print(to_text(report, figures.texts, settings.business.timezone), end="")
    return 0


_ROLES = {"admin": "coordinador", "agent": "asesor"}


def _agents_list(args: argparse.Namespace) -> int:
    from storage.models import Agent
    from storage.uow import UnitOfWork

    settings = _settings()

    async def read(db: Database) -> list[Agent]:
        async with UnitOfWork(db) as uow:
            return await uow.agents.all()

    agents = _with_database(settings, read)
    if not agents:
        print("No hay asesores. Agrega uno con `seguibot agents add NOMBRE`.")
        return 0
    print(f"{'id':>4}  {'rol':<11} {'estado':<8} {'nombre':<24} e-mail")
    for agent in agents:
        state = "activo" if agent.active else "inactivo"
        role = _ROLES.get(agent.role, agent.role)
        print(f"{agent.id:>4}  {role:<11} {state:<8} {agent.name:<24} {agent.email or '-'}")
    return 0


# --- changes to agents (English: for whoever runs the service) ----------------------------------


def _agents_add(args: argparse.Namespace) -> int:
    from bot.desk.accounts import hash_password
    from bot.desk.handoff import Desk

    settings = _settings()

    password_hash = None
    if args.password_stdin:
        if not args.email:
            raise ConfigError("--password-stdin needs --email: agents sign in with their e-mail")
        password_hash = hash_password(sys.stdin.readline().rstrip("\n"))

    async def add(db: Database) -> str:
        agent, token = await Desk(db).add_agent(
            args.name,
            email=args.email,
            admin=args.admin,
            telegram_chat_id=args.telegram_chat_id,
            password_hash=password_hash,
        )
        return f"agent {agent.id} ({agent.role}): {agent.name}\ntoken (shown once): {token}"

    print(_with_database(settings, add))
    return 0


def _agents_rename(args: argparse.Namespace) -> int:
    from bot.desk.team import Team

    settings = _settings()

    async def rename(db: Database) -> str:
        before = (await Team(db).get(args.agent)).name
        agent = await Team(db).rename(args.agent, args.name)
        return f"agent {agent.id}: {before} is now {agent.name}"

    print(_with_database(settings, rename))
    return 0


def _agents_deactivate(args: argparse.Namespace) -> int:
    from bot.desk.team import Team

    settings = _settings()

    async def deactivate(db: Database) -> str:
        done = await Team(db).deactivate(args.agent)
        lines = [
            f"agent {done.agent.id} ({done.agent.name}) deactivated: their token no longer works"
        ]
        if done.requeued:
            ids = ", ".join(str(i) for i in done.requeued)
            lines.append(f"conversations back in the queue: {ids}")
        if done.upcoming_appointments:
            lines.append(
                f"they still hold {done.upcoming_appointments} upcoming appointment(s): "
                "see `seguibot appointments --week`"
            )
        return "\n".join(lines)

    print(_with_database(settings, deactivate))
    return 0


def _agents_activate(args: argparse.Namespace) -> int:
    from bot.desk.team import Team

    settings = _settings()

    async def activate(db: Database) -> str:
        agent = await Team(db).activate(args.agent)
        return f"agent {agent.id} ({agent.name}) is active again"

    print(_with_database(settings, activate))
    return 0


def _agents_remove(args: argparse.Namespace) -> int:
    from bot.desk.team import Team

    settings = _settings()

    async def remove(db: Database) -> str:
        agent = await Team(db).remove(args.agent)
        return f"agent {agent.id} ({agent.name}) removed"

    print(_with_database(settings, remove))
    return 0


def _agents_token(args: argparse.Namespace) -> int:
    from bot.desk.team import Team

    settings = _settings()

    async def replace(db: Database) -> str:
        agent, token = await Team(db).new_token(args.agent)
        return (
            f"agent {agent.id} ({agent.name}): the old token no longer works\n"
            f"token (shown once): {token}"
        )

    print(_with_database(settings, replace))
    return 0


def _chat(args: argparse.Namespace) -> int:
    """The web chat's conversation, in the terminal, against the same database."""
    from bot.app import create_app
    from bot.core.channel import Channel, web_chat_message
    from bot.desk.transcripts import Transcripts
    from bot.web.keys import DATABASE, ENGINE

    settings = _settings()
    _ready_to_serve(settings)
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
                    web_chat_message(session, uuid.uuid4().hex, text, datetime.now(UTC))
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


# --- leads (the CRM) ----------------------------------------------------------------------------


def _crm(settings: Settings, work: Callable[[web.Application], Awaitable[T]]) -> T:
    """The app's services, built but not started (no listening, no sending), pipelines seeded."""
    from bot.app import create_app
    from bot.web.keys import DATABASE, PIPELINES

    async def run(_: Database) -> T:
        app = create_app(settings)
        try:
            await app[PIPELINES].seed()
            return await work(app)
        finally:
            await app[DATABASE].dispose()

    return _with_database(settings, run)


def _leads_import(args: argparse.Namespace) -> int:
    from bot.crm.imports import Imported, Importer
    from bot.web.keys import DATABASE, ENGINE, PIPELINES

    settings = _settings()
    try:
        with open(args.file, encoding="utf-8-sig", newline="") as source:
            text = source.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {exc}") from None

    async def work(app: web.Application) -> Imported:
        importer = Importer(
            app[DATABASE],
            app[PIPELINES],
            app[ENGINE].rules.scoring,
            region=settings.business.phone_region,
            timezone=settings.business.timezone,
        )
        return await importer.run(text, dry_run=args.dry_run)

    result = _crm(settings, work)
    for bad in result.bad:
        print(f"line {bad.line}: {bad.reason}")
    if args.dry_run:
        print(f"dry run: {result.good} rows would be added, {len(result.bad)} bad; nothing added")
    else:
        print(f"added {len(result.added)} leads; {len(result.bad)} bad rows skipped")
    return 1 if result.bad else 0


def _leads_export(args: argparse.Namespace) -> int:
    from bot.crm.imports import export
    from bot.web.keys import RECORDS

    settings = _settings()

    async def work(app: web.Application) -> str:
        return await export(app[RECORDS])

    text = _crm(settings, work)
    try:
        with open(args.file, "w", encoding="utf-8", newline="") as target:
            target.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.file}: {exc}") from None
    count = sum(1 for _ in csv.reader(io.StringIO(text))) - 1  # a cell may hold a newline
    print(f"exported {count} leads to {args.file}")
    return 0


def _leads_merge(args: argparse.Namespace) -> int:
    from bot.web.keys import DUPLICATES

    settings = _settings()

    async def work(app: web.Application) -> int:
        kept = await app[DUPLICATES].merge(args.keep, args.other)
        return kept.id

    kept = _crm(settings, work)
    print(f"merged lead {args.other} into lead {kept}")
    return 0


# --- scripts (English: for whoever runs the service) --------------------------------------------


def _script_versions(settings: Settings, db: Database) -> ScriptVersions:
    from bot.app import script_versions

    return script_versions(settings, db, None)


def _scripts_export(args: argparse.Namespace) -> int:
    from intents import editing

    settings = _settings()

    async def read(db: Database) -> tuple[int, str]:
        versions = _script_versions(settings, db)
        await versions.start()
        version = await (
            versions.live() if args.version is None else versions.version(args.version)
        )
        # The sequences it runs are written out, so the file is the whole version to edit.
        return version.number, editing.with_sequences(version.body, versions.factory_sequences())

    number, body = _with_database(settings, read)
    if args.file == "-":
        sys.stdout.write(body)
    else:
        Path(args.file).write_text(body, encoding="utf-8")
        print(f"version {number} written to {args.file}")
    return 0


def _scripts_import(args: argparse.Namespace) -> int:
    from bot.desk.team import COMMAND_LINE

    settings = _settings()
    try:
        body = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {exc}") from None

    async def publish(db: Database) -> int:
        versions = _script_versions(settings, db)
        await versions.start()
        return (await versions.publish(body, args.comment, COMMAND_LINE)).number

    number = _with_database(settings, publish)
    print(f"version {number} is live: running processes switch to it within seconds")
    return 0


def _scripts_versions(args: argparse.Namespace) -> int:
    settings = _settings()

    async def read(db: Database) -> list[ScriptVersion]:
        versions = _script_versions(settings, db)
        await versions.start()
        return await versions.versions()

    rows = _with_database(settings, read)
    tz = settings.business.tz
    for i, version in enumerate(rows):
        live = "live" if i == 0 else ""
        restores = f" (restores {version.restores})" if version.restores else ""
        author = f"agent {version.author_id}" if version.author_id else "-"
        print(
            f"{version.number:>4}  {live:<4}  {_when(version.created_at, tz)}  {author:<10}  "
            f"{version.comment}{restores}"
        )
    return 0


def _scripts_rollback(args: argparse.Namespace) -> int:
    from bot.desk.team import COMMAND_LINE

    settings = _settings()

    async def rollback(db: Database) -> int:
        versions = _script_versions(settings, db)
        await versions.start()
        return (await versions.rollback(args.number, COMMAND_LINE)).number

    number = _with_database(settings, rollback)
    print(f"version {number} (the text of version {args.number}) is live")
    return 0

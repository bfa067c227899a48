"""The report pages on PostgreSQL with a year of a busy business: each must answer in < 2 s.

1. A throw-away database (BENCH_POSTGRES_URL, as bench/core_webchat.py) is migrated and filled
   in SQL with `INSERT … SELECT generate_series` (seconds, not minutes): `--leads` leads (100 000)
   over the last 365 days, each with a channel identity and a conversation, `--messages`
   messages (1 000 000; 5 % of the inbound ones objections), `--activities` activities
   (200 000), a stage history (every lead enters the first stage, fewer reach each next one),
   deals (won and lost), handoffs, appointments, tasks, sequence steps and a year of CAC spend.
2. The real app (`create_app`) serves it in this process; a coordinator and an agent sign in
   through the login form like a browser.
3. Each page is fetched `--repeat` times: /console/reports for a day, week, month and a custom
   90 days (as the coordinator), the month as the agent, a CSV and an Excel export, and the
   glossary. The slowest of each is reported; any above 2 s fails the run (exit 1).

Run: `.venv/bin/python -m bench.reports [--leads 100000] [--messages 1000000]
[--activities 200000] [--repeat 3] [--keep NAME]`

`--keep NAME` keeps the database NAME after the run and, when it already holds the data, only
migrates it (a new index is built on the rows already there) instead of generating them again:
for trying query changes one after another without 100 s of generation each time. Drop it with
`DROP DATABASE NAME` when done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.core_webchat import ADMIN_URL, postgres_database
from bot.app import create_app
from bot.desk.accounts import hash_password
from bot.settings import load_settings
from bot.web.keys import DESK
from storage import migrate
from storage.db import Database

TARGET_SECONDS = 2.0
PASSWORD = "una-clave-larga-1"
AGENTS = 20
STAGES = ("awareness", "interest", "consideration", "intent", "purchase")

# Each statement fills one table from generate_series; :leads etc. are bound.
FILL = [
    # Agents 1..20 (the first is a coordinator); tokens are placeholders nobody uses.
    """INSERT INTO agents (name, email, role, token_hash, active, created_at, session_epoch,
                           available, capacity)
       SELECT 'Agente ' || g, 'agente' || g || '@example.com',
              CASE WHEN g = 1 THEN 'admin' ELSE 'agent' END,
              md5('t' || g) || md5('u' || g), true, now(), 0, true, 8
       FROM generate_series(1, 20) g""",
    """INSERT INTO leads (name, source, stage, score, tier, owner_id, timezone, first_contact_at,
                          last_activity_at, opted_out_at, tags, custom)
       SELECT 'Lead ' || g,
              (ARRAY['email','facebook','google','referidos','instagram',NULL])[1 + g % 6],
              (ARRAY['awareness','interest','consideration','intent','purchase'])[
                  CASE WHEN g % 10 = 0 THEN 5 WHEN g % 5 = 0 THEN 4 WHEN g % 3 = 0 THEN 3
                       WHEN g % 2 = 0 THEN 2 ELSE 1 END],
              1 + (g * 7919) % 50,
              CASE WHEN (1 + (g * 7919) % 50) >= 40 THEN 'hot'
                   WHEN (1 + (g * 7919) % 50) >= 30 THEN 'warm'
                   WHEN (1 + (g * 7919) % 50) >= 20 THEN 'cold' ELSE 'disqualified' END,
              1 + g % 20, 'America/Mexico_City',
              now() - make_interval(secs => (g * 31536000.0 / :leads)::double precision),
              now() - make_interval(secs => ((g * 31536000.0 / :leads) / 2)::double precision),
              CASE WHEN g % 50 = 0 THEN now() - interval '1 day' END,
              '[]', '{}'
       FROM generate_series(1, :leads) g""",
    """INSERT INTO channel_identities (lead_id, channel, external_id, reachable, created_at)
       SELECT id, (ARRAY['webchat','telegram','whatsapp'])[1 + id % 3], 'x' || id, true,
              first_contact_at
       FROM leads""",
    """INSERT INTO conversations (lead_id, identity_id, channel, state, context, labels,
                                  created_at, updated_at)
       SELECT lead_id, id, channel, 'bot', '{}', '[]', created_at, created_at
       FROM channel_identities""",
    # Every lead entered the first stage at first contact; each next stage, fewer and later.
    """INSERT INTO stage_changes (lead_id, from_stage, to_stage, at)
       SELECT l.id, CASE WHEN s.n > 1 THEN (ARRAY['awareness','interest','consideration',
              'intent','purchase'])[s.n - 1] END,
              (ARRAY['awareness','interest','consideration','intent','purchase'])[s.n],
              l.first_contact_at + make_interval(days => (s.n - 1) * 3)
       FROM leads l
       JOIN generate_series(1, 5) s(n) ON s.n <= CASE WHEN l.id % 10 = 0 THEN 5
            WHEN l.id % 5 = 0 THEN 4 WHEN l.id % 3 = 0 THEN 3 WHEN l.id % 2 = 0 THEN 2
            ELSE 1 END""",
    # Messages: 10 per conversation on average, inbound and outbound in turn.
    """INSERT INTO messages (conversation_id, channel, direction, author, agent_id, text, media,
                             intent, status, created_at)
       SELECT 1 + g % :leads, 'webchat',
              CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END,
              CASE WHEN g % 2 = 0 THEN 'lead' WHEN g % 7 = 1 THEN 'agent' ELSE 'bot' END,
              CASE WHEN g % 2 = 1 AND g % 7 = 1 THEN 1 + g % 20 END,
              'texto', '[]',
              CASE WHEN g % 2 = 0 AND g % 20 = 0 THEN (ARRAY['objection.price',
                   'objection.think','objection.time','objection.trust'])[1 + (g / 20) % 4]
                   WHEN g % 2 = 0 THEN 'greeting' END,
              CASE WHEN g % 2 = 0 THEN 'received' ELSE 'sent' END,
              now() - make_interval(
                  secs => ((g % :leads) * 31536000.0 / :leads - (g / :leads) * 3600)
                           ::double precision)
       FROM generate_series(1, :messages) g""",
    """INSERT INTO activities (lead_id, agent_id, kind, occurred_at, created_at, body, details)
       SELECT 1 + (g * 31) % :leads, 1 + g % 20,
              (ARRAY['call','meeting','message','email','note','stage'])[1 + g % 6],
              now() - make_interval(secs => (g * 31536000.0 / :activities)::double precision),
              now(), '', '{}'
       FROM generate_series(1, :activities) g""",
    """INSERT INTO deals (lead_id, agent_id, product, amount, currency, status, opened_at,
                          closed_at)
       SELECT id, owner_id, 'Plan', 100 + (id % 40) * 25, 'MXN',
              CASE WHEN id % 10 = 0 THEN 'won' WHEN id % 7 = 0 THEN 'lost' ELSE 'open' END,
              first_contact_at,
              CASE WHEN id % 10 = 0 OR id % 7 = 0 THEN first_contact_at + interval '12 days' END
       FROM leads WHERE id % 4 = 0 OR id % 7 = 0 OR id % 10 = 0""",
    """INSERT INTO handoffs (conversation_id, lead_id, reason, priority, state, agent_id,
                             requested_at, claimed_at)
       SELECT id, lead_id, 'asked', 1, 'claimed', 1 + id % 20, created_at,
              created_at + make_interval(mins => (id % 30)::int)
       FROM conversations WHERE id % 5 = 0""",
    """INSERT INTO appointments (lead_id, agent_id, kind, starts_at, ends_at, state, created_at)
       SELECT id, NULL, 'call',
              first_contact_at + interval '2 days' + make_interval(mins => id::int),
              first_contact_at + interval '2 days 30 minutes' + make_interval(mins => id::int),
              (ARRAY['done','no_show','cancelled'])[1 + id % 3], first_contact_at
       FROM leads WHERE id % 5 = 0""",
    """INSERT INTO tasks (lead_id, owner_id, title, priority, due_at, done_at, created_at)
       SELECT id, owner_id, 'Llamar', 'normal', first_contact_at + interval '3 days',
              CASE WHEN id % 3 = 0 THEN first_contact_at + interval '3 days' END, first_contact_at
       FROM leads WHERE id % 10 = 1""",
    """INSERT INTO sequence_runs (lead_id, sequence, state, started_at)
       SELECT id, (ARRAY['hot','warm','cold'])[1 + id % 3], 'completed', first_contact_at
       FROM leads WHERE id % 3 = 1""",
    """INSERT INTO scheduled_actions (kind, due_at, payload, state, lead_id, sequence_run_id,
                                      attempts, created_at, fired_at)
       SELECT 'sequence.step', r.started_at + make_interval(days => s.n),
              jsonb_build_object('sequence', r.sequence, 'step', s.n), 'done', r.lead_id, r.id,
              1, r.started_at, r.started_at + make_interval(days => s.n)
       FROM sequence_runs r CROSS JOIN generate_series(0, 2) s(n)""",
    """INSERT INTO cac_entries (source, month, amount, currency, created_at)
       SELECT s, (date_trunc('month', now()) - make_interval(months => m))::date,
              1000 + m * 100, 'MXN', now()
       FROM unnest(ARRAY['email','facebook','google','referidos','instagram']) s
       CROSS JOIN generate_series(0, 12) m""",
]

PAGES = [
    ("día", "/console/reports?period=day"),
    ("semana", "/console/reports?period=week"),
    ("mes", "/console/reports?period=month"),
    ("90 días", "/console/reports?period=custom&date={d90}&until={today}"),
    ("mes, CSV del embudo", "/console/reports/export/funnel.csv?period=month"),
    ("mes, Excel por hora", "/console/reports/export/by_hour.xlsx?period=month"),
    ("glosario", "/console/reports/glossary"),
]


async def _migrated(url: str) -> None:
    db = Database(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


async def fill(url: str, leads: int, messages: int, activities: int) -> dict[str, float]:
    await _migrated(url)
    # No statement timeout here (the service's pool has one): a million rows take a while.
    engine = create_async_engine(url)
    took: dict[str, float] = {}
    try:
        async with engine.begin() as conn:
            # Bulk loading is faster into bare tables: the secondary indexes (not the primary
            # keys) are dropped and built again once the rows are in.
            indexes = (
                await conn.execute(
                    text(
                        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                        "WHERE i.schemaname = 'public' AND i.tablename IN "
                        "('messages', 'activities', 'stage_changes', 'leads', 'scheduled_actions') "
                        "AND i.indexname NOT LIKE 'pk_%' AND i.indexname NOT LIKE 'uq_%'"
                    )
                )
            ).all()
            for name, _ in indexes:
                await conn.execute(text(f'DROP INDEX "{name}"'))
            for statement in FILL:
                table = re.search(r"INSERT INTO (\w+)", statement)
                started = time.perf_counter()
                await conn.execute(
                    text(statement),
                    {
                        key: value
                        for key, value in (
                            ("leads", leads),
                            ("messages", messages),
                            ("activities", activities),
                        )
                        if f":{key}" in statement
                    },
                )
                took[table.group(1) if table else "?"] = time.perf_counter() - started
            started = time.perf_counter()
            for _, definition in indexes:
                await conn.execute(text(definition))
            took["(indexes)"] = time.perf_counter() - started
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return took


async def sign_in(session: aiohttp.ClientSession, base: str, email: str) -> None:
    async with session.get(base + "/console/login") as response:
        page = await response.text()
    token = re.search(r'name="csrf-token" content="([^"]*)"', page)
    assert token is not None
    form = {"csrf": token.group(1), "email": email, "password": PASSWORD}
    async with session.post(base + "/console/login", data=form) as response:
        assert response.status == 200, response.status  # followed to the queue


async def measure(url: str, repeat: int, kept: bool) -> list[tuple[str, str, float, int]]:
    settings = load_settings(environ={**os.environ, "DATABASE_URL": url}).with_overrides(
        console={"secret": "bench"},
        # The daily sweep and summary would start working through the year of leads while
        # the pages are timed: not today.
        tasks={"sweep_at": "23:59"},
        reports={"summary_at": "23:59"},
    )
    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    today = time.strftime("%Y-%m-%d")
    d90 = time.strftime("%Y-%m-%d", time.localtime(time.time() - 89 * 86400))
    desk = app[DESK]
    if not kept:  # a kept database has her from its first run
        await desk.add_agent("Coordinadora", email="jefa@example.com", admin=True,
                             password_hash=hash_password(PASSWORD))  # fmt: skip
    results = []
    try:
        # unsafe: keep cookies set by an IP address (127.0.0.1), as a browser does.
        jar, other = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
        async with (
            aiohttp.ClientSession(cookie_jar=jar) as admin,
            aiohttp.ClientSession(cookie_jar=other) as agent,
        ):
            await sign_in(admin, base, "jefa@example.com")
            await _password(url, "agente2@example.com")
            await sign_in(agent, base, "agente2@example.com")
            plan = [("coordinador", admin, name, path) for name, path in PAGES]
            plan.append(("asesor", agent, "mes (sus cifras)", "/console/reports?period=month"))
            for who, session, name, path in plan:
                slowest, size = 0.0, 0
                for _ in range(repeat):
                    started = time.perf_counter()
                    async with session.get(base + path.format(today=today, d90=d90)) as response:
                        body = await response.read()
                        assert response.status == 200, (path, response.status)
                    slowest = max(slowest, time.perf_counter() - started)
                    size = len(body)
                results.append((who, name, slowest, size))
    finally:
        await server.close()
    return results


async def _password(url: str, email: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE agents SET password_hash = :h WHERE email = :e"),
                {"h": hash_password(PASSWORD), "e": email},
            )
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def kept_database(name: str) -> AsyncIterator[tuple[str, bool]]:
    """The database `name`, created when missing and never dropped; (url, already filled)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit("--keep: a database name in lower case letters, digits and _")
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not found:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    filled = False
    if found:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                has_leads = await conn.scalar(text("SELECT to_regclass('leads') IS NOT NULL"))
                filled = bool(has_leads) and bool(
                    await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM leads)"))
                )
        finally:
            await engine.dispose()
    yield url, filled


async def refresh(url: str) -> dict[str, float]:
    """A kept database: migrate it (new indexes are built on the rows there) and analyze."""
    started = time.perf_counter()
    await _migrated(url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return {"(kept: migrated, analyzed)": time.perf_counter() - started}


async def main(args: argparse.Namespace) -> int:
    database = kept_database(args.keep) if args.keep else _fresh()
    async with database as (url, filled):
        started = time.perf_counter()
        if filled:
            took = await refresh(url)
        else:
            took = await fill(url, args.leads, args.messages, args.activities)
        generated = time.perf_counter() - started
        results = await measure(url, args.repeat, filled)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"data: {args.leads} leads, {args.messages} messages, {args.activities} activities; "
          f"{'kept from an earlier run, ready' if filled else 'generated'} in "
          f"{generated:.1f} s")  # fmt: skip
    for table, seconds in took.items():
        print(f"  {table:<20} {seconds:6.1f} s")
    print(f"{'who':<12} {'page':<24} {'slowest of ' + str(args.repeat):>14} {'bytes':>9}")
    missed = 0
    for who, name, seconds, size in results:
        mark = "" if seconds < TARGET_SECONDS else "  > 2 s"
        missed += bool(mark)
        print(f"{who:<12} {name:<24} {seconds:13.2f}s {size:9d}{mark}")
    return 1 if missed else 0


@contextlib.asynccontextmanager
async def _fresh() -> AsyncIterator[tuple[str, bool]]:
    async with postgres_database() as url:
        yield url, False


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--activities", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="keep the database NAME after the run, and reuse its data when it has some",
    )
    return asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(cli())

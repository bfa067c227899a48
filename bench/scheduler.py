"""Scheduled actions on PostgreSQL: lateness, memory and duplicates with two `serve` processes.

The issue's target: 100 000 pending actions with 1 000 coming due within one minute, p99
lateness ≤ 2 s, resident memory ≤ 300 MB per process, zero duplicates with two processes.

1. A throw-away database gets `--pending` `task.due` actions spread over the next 30 days and
   `--due` more, evenly spread over `--window` seconds from a start time `--lead` seconds after
   seeding (so both services are up and idle well before the first one comes due). Each action
   alerts one task; each due task belongs to its own lead, so the notification it creates
   (`notifications.lead_id`) says which task it was for.
2. Two `python -m bot serve` processes share the database, as two replicas would.
3. Until every due action is done (or the window plus 60 s has passed), both processes' resident
   memory is read from /proc every 0.5 s.
4. Lateness is `fired_at - due_at` (the scheduler stamps `fired_at` when it claims the batch);
   duplicates are tasks with more than one notification; which process fired what comes from
   each process's `/metrics` (`seguibot_actions_total`).

The claim query is also EXPLAINed on the seeded table, with the due actions due, to show whether
`ix_scheduled_actions_state_due_at` serves it.

Run: `.venv/bin/python -m bench.scheduler [--pending 100000] [--due 1000] [--window 60]`
Needs PostgreSQL (BENCH_POSTGRES_URL, as bench/core_webchat.py). Exits 1 if a target is
missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bench.core_webchat import ROOT, free_port, percentile, postgres_database, wait_until_up
from bot.core.model import ActionState
from bot.followup.planner import TASK_DUE
from bot.settings import load_settings
from storage import migrate
from storage.db import Database
from storage.models import Lead, Notification, ScheduledAction, Task
from storage.repositories import Actions

CHUNK = 5000
SAMPLE_SECONDS = 0.5
DRAIN_SECONDS = 60.0  # after the window, how long the services get to catch up
LATENESS_P99_TARGET = 2.0
RSS_TARGET_MB = 300.0


@dataclass
class Service:
    """One `serve` process: its pid, its address, where its stderr goes, its memory peak."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    stderr: Path
    rss_at_ready_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_last_mb: float = 0.0
    samples: list[float] = field(default_factory=list)


def proc_status_mb(pid: int, key: str) -> float:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM) in MB; 0 once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def services(count: int, env: dict[str, str], logs: Path) -> Iterator[list[Service]]:
    """`count` serve processes; stderr goes to files so nothing blocks and errors can be shown."""
    started: list[Service] = []
    try:
        for n in range(count):
            port = free_port()
            name = f"p{n + 1}"
            stderr = logs / f"{name}.stderr"
            with stderr.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot", "serve", "--port", str(port)],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
            started.append(Service(name, process, f"http://127.0.0.1:{port}", stderr))
        yield started
    finally:
        for service in started:
            service.process.terminate()
        for service in started:
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()


async def seed_tasks(
    conn: AsyncConnection, count: int, due_at: datetime, now: datetime, *, with_leads: bool
) -> list[int]:
    """`count` tasks (and, with_leads, one lead each); returns their ids in order."""
    ids: list[int] = []
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        lead_ids: list[int | None] = [None] * size
        if with_leads:
            leads = [
                {
                    "name": f"Prospecto {start + n}",
                    "stage": "new",
                    "score": 0,
                    # Cold, and active now: the daily sweep (if it runs) leaves them alone.
                    "tier": "cold",
                    "timezone": "America/Mexico_City",
                    "first_contact_at": now,
                    "last_activity_at": now,
                }
                for n in range(size)
            ]
            statement = insert(Lead).returning(Lead.id, sort_by_parameter_order=True)
            lead_ids = list((await conn.execute(statement, leads)).scalars())
        tasks = [
            {
                "lead_id": lead_ids[n],
                "title": f"Llamar al prospecto {start + n}",
                "priority": "normal",
                "due_at": due_at,
                "created_at": now,
            }
            for n in range(size)
        ]
        statement = insert(Task).returning(Task.id, sort_by_parameter_order=True)
        ids += (await conn.execute(statement, tasks)).scalars()
    return ids


async def seed_actions(
    conn: AsyncConnection, task_ids: Sequence[int], due: Sequence[datetime], now: datetime
) -> None:
    rows = [
        {
            "kind": TASK_DUE,
            "due_at": due_at,
            "payload": {"task": task_id},
            "state": ActionState.PENDING,
            "attempts": 0,
            "created_at": now,
        }
        for task_id, due_at in zip(task_ids, due, strict=True)
    ]
    for start in range(0, len(rows), CHUNK):
        await conn.execute(insert(ScheduledAction), rows[start : start + CHUNK])


async def explain_claim(db: Database, now: datetime, limit: int) -> list[str]:
    """EXPLAIN ANALYZE of the statement `Actions.claim_due` really sends, rolled back after.

    The statement is captured at the driver, so the plan is that of the repository's query,
    not of a copy of it.
    """
    captured: list[tuple[str, Any]] = []
    async with db.engine.connect() as conn:
        # Planner statistics as a running deployment has them (autovacuum may not have run yet).
        await conn.execute(text("ANALYZE scheduled_actions"))
        await conn.commit()

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
            captured.append((statement, parameters))

        event.listen(conn.sync_connection, "before_cursor_execute", capture)
        try:
            async with AsyncSession(bind=conn) as session:
                claimed = await Actions(session).claim_due(now, limit)
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", capture)
        statement, parameters = next((s, p) for s, p in captured if "scheduled_actions" in s)
        result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = [str(row[0]) for row in result]
        await conn.rollback()
    return [f"(claimed {len(claimed)} rows at now = due window's end)", *plan]


async def scrape_fired(base: str) -> int:
    """How many `task.due` actions this process marked done, from its Prometheus counter."""
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        body = await response.text()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "seguibot_actions_total"
                and labels.get("kind") == TASK_DUE
                and labels.get("result") == "done"
            ):
                return int(sample.value)
    return 0


async def count_done(db: Database, window_end: datetime) -> int:
    async with db.session() as session:
        statement = (
            select(func.count())
            .select_from(ScheduledAction)
            .where(
                ScheduledAction.state == ActionState.DONE,
                ScheduledAction.kind == TASK_DUE,
                ScheduledAction.due_at <= window_end,
            )
        )
        return int((await session.execute(statement)).scalar_one())


def sample_memory(running: Sequence[Service]) -> None:
    for service in running:
        rss = proc_status_mb(service.process.pid, "VmRSS")
        if rss:
            service.rss_last_mb = rss
            service.rss_peak_mb = max(service.rss_peak_mb, rss)
            service.samples.append(rss)


@dataclass(frozen=True, slots=True)
class Outcome:
    lateness: list[float]
    missed: int
    early: int
    future_touched: int
    duplicates: int
    notifications: int
    other_actions: dict[str, int]


async def outcome(db: Database, window_end: datetime, checked_at: datetime) -> Outcome:
    async with db.session() as session:
        due_rows = (
            await session.execute(
                select(
                    ScheduledAction.state, ScheduledAction.due_at, ScheduledAction.fired_at
                ).where(ScheduledAction.kind == TASK_DUE, ScheduledAction.due_at <= window_end)
            )
        ).all()
        lateness = [
            (fired - due).total_seconds()
            for state, due, fired in due_rows
            if state == ActionState.DONE and fired is not None
        ]
        missed = sum(1 for state, _, _ in due_rows if state != ActionState.DONE)
        early = (
            await session.execute(
                select(func.count())
                .select_from(ScheduledAction)
                .where(ScheduledAction.fired_at < ScheduledAction.due_at)
            )
        ).scalar_one()
        # Actions due after the check must all still be pending (nothing fired ahead of time).
        future_touched = (
            await session.execute(
                select(func.count())
                .select_from(ScheduledAction)
                .where(
                    ScheduledAction.due_at > checked_at,
                    ScheduledAction.state != ActionState.PENDING,
                )
            )
        ).scalar_one()
        per_lead = (
            select(Notification.lead_id)
            .where(Notification.lead_id.is_not(None))
            .group_by(Notification.lead_id)
            .having(func.count() > 1)
            .subquery()
        )
        duplicates = (
            await session.execute(select(func.count()).select_from(per_lead))
        ).scalar_one()
        notifications = (
            await session.execute(select(func.count()).select_from(Notification))
        ).scalar_one()
        others = (
            await session.execute(
                select(ScheduledAction.kind, func.count())
                .where(ScheduledAction.kind != TASK_DUE)
                .group_by(ScheduledAction.kind)
            )
        ).all()
    return Outcome(
        lateness=lateness,
        missed=missed,
        early=int(early),
        future_touched=int(future_touched),
        duplicates=int(duplicates),
        notifications=int(notifications),
        other_actions={str(kind): int(n) for kind, n in others},
    )


def stderr_summary(service: Service) -> list[str]:
    lines = service.stderr.read_text(errors="replace").splitlines()
    if not lines:
        return [f"{service.name} stderr: empty"]
    return [f"{service.name} stderr: {len(lines)} lines, first ones:"] + [
        "    " + line[:300] for line in lines[:8]
    ]


async def server_version(db: Database) -> str:
    async with db.engine.connect() as conn:
        return str((await conn.execute(text("SHOW server_version"))).scalar_one())


async def run(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env["SEGUIBOT_LOGGING_LEVEL"] = "WARNING"
    if args.poll_seconds is not None:
        env["SEGUIBOT_SCHEDULING_POLL_SECONDS"] = str(args.poll_seconds)
    if args.batch_size is not None:
        env["SEGUIBOT_SCHEDULING_BATCH_SIZE"] = str(args.batch_size)
    rng = random.Random(6)

    async with postgres_database() as url:
        env["DATABASE_URL"] = url
        # The settings the services will run with (same environment, same config.yaml).
        scheduling = load_settings(environ=env).scheduling
        db = Database(url)
        try:
            await migrate.upgrade(db)
            version = await server_version(db)

            seed_started = time.perf_counter()
            now = datetime.now(UTC)
            horizon = timedelta(days=30)
            # Far enough out that none comes due during the run, however slow it is.
            later_from = now + timedelta(hours=1)
            async with db.engine.begin() as conn:
                later_tasks = await seed_tasks(
                    conn, args.pending, later_from, now, with_leads=False
                )
                later_due = [
                    later_from + (horizon - timedelta(hours=1)) * rng.random() for _ in later_tasks
                ]
                await seed_actions(conn, later_tasks, later_due, now)
                due_tasks = await seed_tasks(conn, args.due, now, now, with_leads=True)
                start = datetime.now(UTC) + timedelta(seconds=args.lead)
                step = args.window / args.due
                due = [start + timedelta(seconds=(n + 0.5) * step) for n in range(args.due)]
                await seed_actions(conn, due_tasks, due, now)
            seeded = time.perf_counter() - seed_started
            window_end = start + timedelta(seconds=args.window)
            plan = await explain_claim(db, window_end, scheduling.batch_size)

            with (
                tempfile.TemporaryDirectory(prefix="seguibot-bench-") as logs,
                services(2, env, Path(logs)) as running,
            ):
                launched = time.perf_counter()
                await asyncio.gather(*(wait_until_up(s.base, "/readyz") for s in running))
                startup = time.perf_counter() - launched
                ready_at = datetime.now(UTC)
                sample_memory(running)
                for service in running:
                    service.rss_at_ready_mb = service.rss_last_mb
                margin = (start - ready_at).total_seconds()

                deadline = window_end + timedelta(seconds=DRAIN_SECONDS)
                done = 0
                while datetime.now(UTC) < deadline:
                    sample_memory(running)
                    if datetime.now(UTC) >= start:
                        done = await count_done(db, window_end)
                        if done >= args.due:
                            break
                    crashed = [s.name for s in running if s.process.poll() is not None]
                    if crashed:
                        print(f"service(s) exited early: {crashed}", file=sys.stderr)
                        break
                    await asyncio.sleep(SAMPLE_SECONDS)
                finished_at = datetime.now(UTC)
                # Idle for a few more samples: does memory settle once the burst is over?
                for _ in range(4):
                    await asyncio.sleep(SAMPLE_SECONDS)
                    sample_memory(running)
                split = [await scrape_fired(s.base) for s in running]
                hwm = [proc_status_mb(s.process.pid, "VmHWM") for s in running]
                result = await outcome(db, window_end, datetime.now(UTC))
                stderr = [line for s in running for line in stderr_summary(s)]
        finally:
            await db.dispose()

    lateness = result.lateness or [float("nan")]
    p99 = percentile(lateness, 99)
    rss_peak = max(s.rss_peak_mb for s in running)
    load = os.getloadavg()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {version}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load[0]:.2f} {load[1]:.2f}"
    )
    print(f"settings: poll_seconds {scheduling.poll_seconds}, batch_size {scheduling.batch_size}")
    print(
        f"seeded: {args.pending} pending over 30 days + {args.due} due over {args.window:.0f} s "
        f"({len(later_tasks) + len(due_tasks)} tasks) in {seeded:.1f} s"
    )
    print(f"start-up: both /readyz in {startup:.1f} s; first due action {margin:.1f} s after ready")
    print("claim query plan (EXPLAIN ANALYZE on the seeded, analyzed table):")
    for line in plan:
        print("    " + line)
    print(
        f"fired: {len(result.lateness)}/{args.due} due actions done "
        f"({done} seen by the poller), {(finished_at - start).total_seconds():.1f} s after the "
        f"first came due; missed {result.missed}; fired early {result.early}; "
        f"later actions touched {result.future_touched}"
    )
    print(
        "by process (/metrics task.due done): "
        + ", ".join(f"{s.name} {n}" for s, n in zip(running, split, strict=True))
    )
    print(
        f"lateness (fired_at - due_at): p50 {percentile(lateness, 50):.3f} s, "
        f"p95 {percentile(lateness, 95):.3f} s, p99 {p99:.3f} s, max {max(lateness):.3f} s"
    )
    for service, peak in zip(running, hwm, strict=True):
        print(
            f"memory {service.name}: RSS {service.rss_at_ready_mb:.0f} MB at ready, peak "
            f"{service.rss_peak_mb:.0f} MB sampled ({len(service.samples)} samples), "
            f"VmHWM {peak:.0f} MB, {service.rss_last_mb:.0f} MB at the end"
        )
    print(
        f"duplicates: {result.duplicates} tasks with more than one notification "
        f"({result.notifications} notifications for {len(result.lateness)} fired)"
    )
    if result.other_actions:
        print(f"other actions in the table: {result.other_actions}")
    for line in stderr:
        print(line)

    failures = []
    if result.missed:
        failures.append(f"{result.missed} due actions not fired")
    if not p99 <= LATENESS_P99_TARGET:
        failures.append(f"p99 lateness {p99:.3f} s > {LATENESS_P99_TARGET} s")
    if rss_peak > RSS_TARGET_MB:
        failures.append(f"RSS {rss_peak:.0f} MB > {RSS_TARGET_MB:.0f} MB")
    if result.duplicates or result.notifications != len(result.lateness):
        failures.append(
            f"{result.duplicates} tasks notified twice; {result.notifications} notifications "
            f"for {len(result.lateness)} fired actions"
        )
    if result.early or result.future_touched:
        failures.append("actions fired before they were due")
    if margin < 5:
        failures.append(f"services were ready only {margin:.1f} s before the first due action")
    print("result: " + ("all targets met" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000, help="actions due later")
    parser.add_argument("--due", type=int, default=1000, help="actions due within the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the due ones span")
    parser.add_argument(
        "--lead",
        type=float,
        default=30.0,
        help="seconds from the end of seeding to the first due action (start-up must fit)",
    )
    parser.add_argument("--poll-seconds", type=float, help="override scheduling.poll_seconds")
    parser.add_argument("--batch-size", type=int, help="override scheduling.batch_size")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()

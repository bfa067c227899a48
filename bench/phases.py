"""Who spends the CPU, phase by phase: the server, PostgreSQL and the load generator (issue 15).

`.venv/bin/python -m bench.phases new8,new8,est8,est128 [--seconds 8]`: one `seguibot serve` on a
throw-away PostgreSQL database, the closed-loop phases of `bench.throughput` in the order given
(`new` = every message a new lead, `est` = established conversations; the number is the
clients), all on the same server and database so that what grows during a run shows. Per
phase: throughput and latency, the server's user and system CPU per message, the CPU per
message of every `postgres` process alive at both ends of the phase (the whole server: its
background workers count), the load generator's, the machine's idle share, and what the
client backends were doing (`pg_stat_activity` sampled every 50 ms: state and wait event,
averaged per sample). These figures are over the whole phase, an established phase's
opening messages included. The server is CPU-bound when its CPU per message times the rate
is near 1 000 ms per second; when it is well below, it waits for PostgreSQL or for a core.

To see which statements PostgreSQL spends its time on, `--log-statements` sets
`log_min_duration_statement = 0` on the throw-away database: every statement's duration goes
to PostgreSQL's own log (where that is depends on the installation; `/var/log/postgresql/` on
Debian), with each phase's start and end printed here as Unix times to cut it by.

To measure a change against the code before it on this shared machine, `--against REF` runs
the same plan on a server of REF (a temporary git worktree) and on one of this checkout, in
turn for `--rounds` rounds (the order flips each round), each on a database of its own, and
sums each phase up by its medians: a ratio measured in one sitting, which a single run of
either cannot give when the machine's speed drifts by 10 % in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from bench.core_webchat import free_port, postgres_database, realistic_texts, wait_until_up
from bench.throughput import (
    ESTABLISHED,
    ROOT,
    all_listening,
    answered_texts,
    closed_loop,
    cpu_seconds,
    server,
    user_and_system,
)
from storage import migrate
from storage.db import Database

_ACTIVITY = """
    SELECT state, coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-') AS waiting
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def postgres_processes() -> dict[int, float]:
    """CPU seconds of every process named postgres, by pid."""
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return {int(pid): cpu_seconds([int(pid)]) for pid in found.split()}


def machine_ticks() -> tuple[int, int]:
    """All and idle CPU ticks of the machine, from /proc/stat."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3]


async def sample_activity(dsn: str, seen: collections.Counter[str], samples: list[int]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            rows = await connection.fetch(_ACTIVITY)
            samples[0] += 1
            for row in rows:
                seen[f"{row['state']} {row['waiting']}"] += 1
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def run(
    plan: list[tuple[str, int]], seconds: float, log_statements: bool, *, root: Path = ROOT
) -> list[tuple[float, float]]:
    """The plan on a server of the checkout at `root`: per phase, messages per second and the
    server's CPU ms per message (both printed as they come, with the rest)."""
    results: list[tuple[float, float]] = []
    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        if log_statements:
            connection = await asyncpg.connect(dsn)
            name = url.rsplit("/", 1)[1]
            await connection.execute(f"ALTER DATABASE {name} SET log_min_duration_statement = 0")
            await connection.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
        env.update(DATABASE_URL=url, SEGUIBOT_LOGGING_LEVEL="WARNING")
        port = free_port()
        command = [sys.executable, "-m", "bot", "serve", "--port", str(port)]
        with server(command, env, cwd=root) as bot:
            base = f"http://127.0.0.1:{port}"
            await all_listening(port, 1)
            await wait_until_up(base, "/readyz")
            await closed_loop(base, realistic_texts(), 2, 8, established=False, pids=[])
            for kind, clients in plan:
                seen: collections.Counter[str] = collections.Counter()
                samples = [0]
                sampler = asyncio.create_task(sample_activity(dsn, seen, samples))
                server_before, postgres_before = user_and_system(bot.pid), postgres_processes()
                own_before, machine_before = os.times(), machine_ticks()
                started = time.time()
                established = kind == "est"
                tally = await closed_loop(
                    base,
                    answered_texts() if established else realistic_texts(),
                    seconds,
                    clients,
                    established=established,
                    pids=[bot.pid],
                )
                ended = time.time()
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
                server_after, postgres_after = user_and_system(bot.pid), postgres_processes()
                own_after, machine_after = os.times(), machine_ticks()
                # The window holds an established phase's first messages too (each of its
                # conversations opened before its clock starts).
                messages = max(tally.ok + (ESTABLISHED if established else 0), 1)
                postgres = sum(
                    cpu - postgres_before[pid]
                    for pid, cpu in postgres_after.items()
                    if pid in postgres_before
                )
                own = (own_after.user + own_after.system) - (own_before.user + own_before.system)
                total, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
                print(tally.line(f"{kind}, {clients} clients"), flush=True)
                results.append((tally.rate, tally.cpu_ms / max(tally.ok, 1)))
                print(
                    f"  {started:.1f}-{ended:.1f}: server user"
                    f" {(server_after[0] - server_before[0]) * 1000 / messages:.2f} + system"
                    f" {(server_after[1] - server_before[1]) * 1000 / messages:.2f} ms/msg,"
                    f" PostgreSQL {postgres * 1000 / messages:.2f} ms/msg, load generator"
                    f" {own * 1000 / messages:.2f} ms/msg, machine idle {idle / total:.0%}",
                    flush=True,
                )
                activity = ", ".join(
                    f"{state} {count / max(samples[0], 1):.1f}"
                    for state, count in seen.most_common(5)
                )
                print(f"  client backends per sample: {activity}", flush=True)
    return results


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """`ref` of this repository in a temporary worktree (its own code; this venv)."""
    with tempfile.TemporaryDirectory(prefix="seguibot-bench-") as parent:
        path = Path(parent) / "checkout"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(path), ref], check=True)
        try:
            yield path
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)


async def compare(plan: list[tuple[str, int]], seconds: float, against: str, rounds: int) -> None:
    """The plan on servers of `against` and of this checkout, in turn; medians per phase."""
    found: dict[str, list[list[tuple[float, float]]]] = {against: [], "this checkout": []}
    with checkout(against) as other:
        order = [(against, other), ("this checkout", ROOT)]
        for round_ in range(rounds):
            for name, root in order if round_ % 2 == 0 else order[::-1]:
                print(f"== {name}, round {round_ + 1} of {rounds}", flush=True)
                found[name].append(await run(plan, seconds, False, root=root))
    print(f"== medians of {rounds} rounds: {against} -> this checkout")
    for at, (kind, clients) in enumerate(plan):
        before, after = ([phases[at] for phases in found[name]] for name in found)
        rate_before = statistics.median(rate for rate, _ in before)
        rate_after = statistics.median(rate for rate, _ in after)
        cpu_before = statistics.median(cpu for _, cpu in before)
        cpu_after = statistics.median(cpu for _, cpu in after)
        print(
            f"{kind}, {clients} clients: {rate_before:.0f} -> {rate_after:.0f} msg/s"
            f" ({rate_after / rate_before - 1:+.0%}), server CPU {cpu_before:.2f} ->"
            f" {cpu_after:.2f} ms/msg  (each round: "
            + " / ".join(f"{rate:.0f}" for rate, _ in before)
            + " -> "
            + " / ".join(f"{rate:.0f}" for rate, _ in after)
            + ")",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="phases in order, e.g. new8,new8,est8,est128")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument(
        "--log-statements", action="store_true", help="log every statement's duration"
    )
    parser.add_argument("--against", help="a git ref to compare with, servers in turn")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --against (default 2)")
    args = parser.parse_args()
    if args.against and args.log_statements:
        parser.error("--log-statements is for one server, not with --against")
    plan = []
    for step in args.plan.split(","):
        kind, clients = step[:3], step[3:]
        if kind not in ("new", "est") or not clients.isdigit():
            parser.error(f"a phase is new<clients> or est<clients>, not {step!r}")
        plan.append((kind, int(clients)))
    if args.against:
        asyncio.run(compare(plan, args.seconds, args.against, args.rounds))
    else:
        asyncio.run(run(plan, args.seconds, args.log_statements))


if __name__ == "__main__":
    main()

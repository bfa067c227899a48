"""The engine's CPU per message in process, by how many statements each message ran (issue 15).

`.venv/bin/python -m bench.paths est|new [--messages 1500]`: a throw-away PostgreSQL database
and the service's engine in this process (no HTTP, no load generator), then `--messages`
messages one after another: `est` sends the established phase's texts (`answered_texts`) to 40
conversations opened before, `new` sends the realistic mix (`realistic_texts`), each from a
new sender. Per message: the statements SQLAlchemy's `before_cursor_execute` saw and the CPU
(`time.process_time`), after warm-up messages and `bot.heap.settle`, as in a server. Prints
the mean, then the messages grouped by their statements: which paths are common and what each
costs, which the servers' phases cannot show.

`--against REF --rounds N` runs the same on the code of REF (a temporary git worktree, this
file run against it) and of this checkout, in turn, the order flipped each round, and sums up
by medians: the engine's own cost before and after a change, on a shared machine whose speed
drifts by 10 % in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.core_webchat import postgres_database, realistic_texts
from bot import heap
from bot.app import create_app
from bot.conversation.engine import Engine
from bot.settings import load_settings
from bot.web.keys import DATABASE, ENGINE
from storage import migrate
from storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
_MEAN = re.compile(r"^all: (\d+) messages, ([\d.]+) statements, ([\d.]+) ms")


def in_process(url: str) -> tuple[Engine, Database, list[int]]:
    """The service's engine on the database at `url`, in this process, and a one-item list
    that counts the statements it runs (SQLAlchemy's `before_cursor_execute`; set it to 0)."""
    settings = load_settings(environ={"DATABASE_URL": url, "SEGUIBOT_LOGGING_LEVEL": "WARNING"})
    app = create_app(settings)
    engine, db = app[ENGINE], app[DATABASE]
    statements = [0]

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def counted(*_: Any) -> None:
        statements[0] += 1

    return engine, db, statements


async def run(kind: str, count: int) -> None:
    # (Here, not above: bench.throughput imports this module.)
    from bench.throughput import answered_texts, session_id, web_chat_message

    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        engine, db, statements = in_process(url)

        known = [session_id() for _ in range(40)]
        texts = answered_texts() if kind == "est" else realistic_texts()
        warm = known if kind == "est" else [session_id() for _ in range(200)]
        for n, sender in enumerate(warm):
            opening = "hola" if kind == "est" else texts[n]
            await engine.receive(web_chat_message(sender, -n - 1, opening))
        heap.settle()  # as `seguibot serve` does once ready (the matcher is trained by now)
        by_statements: dict[int, list[float]] = collections.defaultdict(list)
        for n in range(count):
            sender = known[n % len(known)] if kind == "est" else session_id()
            statements[0] = 0
            started = time.process_time()
            await engine.receive(web_chat_message(sender, n, texts[n * 7 % len(texts)]))
            by_statements[statements[0]].append((time.process_time() - started) * 1000)
        await db.dispose()
    total = sum(sum(cpu) for cpu in by_statements.values())
    mean_statements = sum(k * len(cpu) for k, cpu in by_statements.items()) / count
    print(f"all: {count} messages, {mean_statements:.2f} statements, {total / count:.2f} ms")
    for k in sorted(by_statements):
        cpu = by_statements[k]
        print(
            f"  {k:2d} statements: {len(cpu) / count:6.1%} of messages, "
            f"{statistics.mean(cpu):6.2f} ms each, {sum(cpu) / total:6.1%} of the CPU"
        )


def measured(root: Path, kind: str, count: int) -> tuple[float, float]:
    """Statements and CPU ms per message of one run on the code at `root` (this file)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, __file__, kind, "--messages", str(count)]
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if found := _MEAN.match(line):
            return float(found[2]), float(found[3])
    raise RuntimeError(f"no result from {root}: {out.stdout[-400:]} {out.stderr[-400:]}")


def compare(kind: str, count: int, against: str, rounds: int) -> None:
    from bench.phases import checkout  # (bench.phases imports bench.throughput: see `run`)

    found: dict[str, list[tuple[float, float]]] = {against: [], "this checkout": []}
    with checkout(against) as other:
        order = [(against, other), ("this checkout", ROOT)]
        for round_ in range(rounds):
            for name, root in order if round_ % 2 == 0 else order[::-1]:
                statements, cpu = measured(root, kind, count)
                print(f"{name}: {statements:.2f} statements, {cpu:.2f} ms", flush=True)
                found[name].append((statements, cpu))
    before, after = (statistics.median(cpu for _, cpu in found[name]) for name in found)
    print(
        f"medians of {rounds} rounds, {kind}: {against} {before:.2f} ms -> this checkout "
        f"{after:.2f} ms ({after / before - 1:+.0%}), statements "
        f"{found[against][0][0]:.2f} -> {found['this checkout'][0][0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("est", "new"), help="established or new senders")
    parser.add_argument("--messages", type=int, default=1500, help="messages measured")
    parser.add_argument("--against", help="a git ref to compare with, in turn")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of --against")
    args = parser.parse_args()
    if args.against:
        compare(args.kind, args.messages, args.against, args.rounds)
    else:
        asyncio.run(run(args.kind, args.messages))


if __name__ == "__main__":
    main()

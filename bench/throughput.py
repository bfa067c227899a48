"""Many prospects at once (issue 15): throughput, errors, lost messages, latency, cost.

One run, one command (`make bench`, or `.venv/bin/python -m bench`):
1. a bare aiohttp handler that parses the same JSON (the ceiling), before every round;
2. `seguibot serve` on a throw-away PostgreSQL database, closed loop with 8, 32 and 128
   concurrent clients, on new sessions (every message a new lead) and on established
   conversations (each client writes to its own sessions, made before the phase);
3. open loop (requests leave on schedule whatever the answers do) at 100 and 300 msg/s;
4. every acknowledged message (200) must have its row: the run counts those that do not;
5. in process: SQL statements and CPU milliseconds per message on the two common paths
   (a new lead; a known conversation where the bot answers).

Each phase counts 5xx answers and other failures. `--workers N,M` measures `serve --workers`.
Needs PostgreSQL (BENCH_POSTGRES_URL, default postgresql+asyncpg://postgres@127.0.0.1/test).
Closed-loop phases run in `--rounds` rounds (every other one in reverse order), each round
after a bare phase of its own, and each concurrency is summed up by its medians: of its
rates, of its shares of its rounds' bare, of its rates against the first concurrency's in
the same round (128 clients against 8), and of its CPU per message. The machine may be
shared: the defaults keep the whole run to about five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from sqlalchemy import text

from bench.core_webchat import (
    BARE_SERVER,
    free_port,
    percentile,
    postgres_database,
    realistic_texts,
    wait_until_up,
)
from bench.paths import in_process
from bot.core import channel
from bot.core.channel import InboundMessage
from intents import load_catalogue
from storage import migrate
from storage.db import Database

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"Content-Type": "application/json"}
ESTABLISHED = 256  # conversations opened before an "established" phase, whatever its clients


# What hands a conversation to a person or ends the bot's part (a "none" may, when repeated).
_BOT_STOPS = frozenset({"optout", "handoff.human", "buy.intent", "none"})


def answered_texts() -> list[str]:
    """The scripts' examples of what the bot answers itself in a conversation in any state
    (objections, questions, booking, yes, no, thanks): the established phases' texts."""
    texts = [e.text for e in load_catalogue().all_examples() if e.intent not in _BOT_STOPS]
    random.Random(7).shuffle(texts)
    return texts


def session_id() -> str:
    """A web chat session id as the page makes them (22 base64url characters, random)."""
    return secrets.token_urlsafe(16)


@dataclass
class Tally:
    """What one phase saw."""

    ok: int = 0
    server_errors: int = 0  # 5xx
    other: int = 0  # 4xx, connection errors
    latencies: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)  # channel message ids answered 200
    answered: int = 0  # 200s that carried a reply of the bot (the rest: a human's turn, opted out)
    seconds: float = 0.0
    cpu_ms: float = 0.0  # the server's CPU time over the phase

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def line(self, label: str) -> str:
        if not self.latencies:
            return f"{label:<34} no answers ({self.server_errors} 5xx, {self.other} other)"
        cpu = f", server CPU {self.cpu_ms / self.ok:.2f} ms/msg" if self.cpu_ms and self.ok else ""
        if self.answered:
            cpu += f", bot answered {self.answered / self.ok:.0%}"
        return (
            f"{label:<34} {self.rate:7.0f} msg/s  p50 {percentile(self.latencies, 50):6.1f} ms"
            f"  p99 {percentile(self.latencies, 99):7.1f} ms  5xx {self.server_errors}"
            f"  other {self.other}{cpu}"
        )


async def post(
    session: aiohttp.ClientSession, base: str, body: dict[str, str], tally: Tally
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(
            base + "/webchat/messages", data=json.dumps(body).encode(), headers=HEADERS
        ) as response:
            answer = await response.read()
            status = response.status
    except aiohttp.ClientError:
        tally.other += 1
        return
    if status == 200:
        tally.ok += 1
        tally.latencies.append((time.perf_counter() - started) * 1000)
        tally.acked.append(f"{body['session_id']}:{body['message_id']}")
        tally.answered += bool(json.loads(answer)["replies"])
    elif status >= 500:
        tally.server_errors += 1
    else:
        tally.other += 1


def user_and_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += sum(user_and_system(pid))
    return total


def listening(port: int) -> int:
    """Sockets listening on the port (one per `serve --workers` process)."""
    hex_port = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                count += fields[1].endswith(hex_port) and fields[3] == "0A"
    return count


async def all_listening(port: int, workers: int) -> None:
    for _ in range(3000):
        if listening(port) >= workers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"only {listening(port)} of {workers} workers listen")


def process_tree(pid: int) -> list[int]:
    children = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]


async def closed_loop(
    base: str, texts: list[str], seconds: float, clients: int, *, established: bool, pids: list[int]
) -> Tally:
    """`clients` clients each sending as soon as answered, for `seconds`.

    Established conversations are the same number at every concurrency (ESTABLISHED, shared
    out among the clients), and the texts sent to them (`texts`: give `answered_texts()`)
    never end the bot's part, so every message costs the same whatever the conversation's
    history: with the realistic mix, a conversation that gets many messages is soon handed to
    a human or opted out and the bot stops answering it, which is cheaper and flattered
    whichever phase sent each conversation more.
    """
    tally = Tally()
    counter = itertools.count()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        own: list[list[str]] = []
        if established:
            known = [session_id() for _ in range(ESTABLISHED)]
            own = [known[n::clients] for n in range(clients)]
            warm = Tally()
            # Each conversation is opened before the clock starts.
            await asyncio.gather(
                *(
                    post(session, base, {"session_id": s, "text": "hola", "message_id": "w"}, warm)
                    for s in known
                )
            )

        async def client(n: int) -> None:
            while time.perf_counter() < deadline:
                i = next(counter)
                sid = own[n][i % len(own[n])] if established else session_id()
                body = {"session_id": sid, "text": texts[i % len(texts)], "message_id": f"m{i}"}
                await post(session, base, body, tally)

        cpu = cpu_seconds(pids)
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(n) for n in range(clients)))
        tally.seconds = time.perf_counter() - started
        tally.cpu_ms = (cpu_seconds(pids) - cpu) * 1000
    return tally


async def open_loop(base: str, texts: list[str], rate: float, seconds: float) -> Tally:
    """Requests at a steady `rate` (half to known conversations), whatever the answers do."""
    tally = Tally()
    known = [session_id() for _ in range(50)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sid = known[n % len(known)] if n % 2 else session_id()
            body = {"session_id": sid, "text": texts[n % len(texts)], "message_id": f"o{n}"}
            tasks.append(asyncio.create_task(post(session, base, body, tally)))
        await asyncio.gather(*tasks)
        tally.seconds = time.perf_counter() - start
    return tally


async def missing(url: str, acked: list[str]) -> int:
    """Acknowledged messages without a row."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT channel_message_id FROM messages WHERE direction = 'in'")
            )
            stored = {row[0] for row in rows}
    finally:
        await db.dispose()
    return len(set(acked) - stored)


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], *, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """The command (a `python -m bot serve`) running from `cwd`: that checkout's code."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
            errors = [line for line in lines if '"ERROR"' in line or "Traceback" in line]
            if errors:
                first = errors[0]
                with contextlib.suppress(ValueError, AttributeError):
                    logged = json.loads(first)
                    last = (logged.get("exc") or "").strip().splitlines()[-1:]
                    first = f"{logged.get('event', '')[:120]} -> {' '.join(last)}"
                print(
                    f"  the server logged {len(errors)} errors; first: {first[:400]}",
                    file=sys.stderr,
                )


# The known conversation's texts in process: ones the bot answers (questions about the offer).
ANSWERED = ["¿cuánto cuesta?", "¿qué incluye?", "me interesa, ¿cómo funciona?", "hola"]


def web_chat_message(sender: str, n: int | str, text: str) -> InboundMessage:
    """Message number `n` of web chat session `sender`, sent now."""
    return channel.web_chat_message(sender, f"p{n}", text, datetime.now(UTC))


async def profile(url: str, texts: list[str], count: int) -> dict[str, dict[str, float]]:
    """Statements and CPU ms per message, in process, on a new lead and a known conversation."""
    engine, db, statements = in_process(url)
    results: dict[str, dict[str, float]] = {}
    for path in ("new lead", "known conversation"):
        known = [session_id() for _ in range(20)]
        for sid in known:
            await engine.receive(web_chat_message(sid, -1, "hola"))
        statements[0] = 0
        replies = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(count):
            if path == "new lead":
                sender, text_ = session_id(), texts[n % len(texts)]
                outcome = await engine.receive(web_chat_message(sender, n, text_))
            else:
                sid = known[n % len(known)]
                text_ = ANSWERED[n % len(ANSWERED)]
                outcome = await engine.receive(web_chat_message(sid, n, text_))
            replies += len(outcome.replies)
        results[path] = {
            "statements": statements[0] / count,
            "cpu_ms": (time.process_time() - cpu) / count * 1000,
            "wall_ms": (time.perf_counter() - wall) / count * 1000,
            "replies": replies / count,
        }
    await db.dispose()
    return results


async def run(args: argparse.Namespace) -> None:
    texts = realistic_texts()
    answered = answered_texts()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"load {os.getloadavg()[0]:.2f}; phases of {args.seconds:g} s",
        flush=True,
    )
    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
        env.update(DATABASE_URL=url, SEGUIBOT_LOGGING_LEVEL="WARNING")

        bare_port = free_port()
        with server([sys.executable, "-c", BARE_SERVER, str(bare_port)], env) as bare:
            bare_base = f"http://127.0.0.1:{bare_port}"
            await wait_until_up(bare_base, "/")
            await closed_loop(bare_base, texts, 1, 32, established=False, pids=[])

            async def measure_bare(label: str) -> Tally:
                """Bare aiohttp now: the ceiling the phases that follow are shared against."""
                tally = await closed_loop(
                    bare_base, texts, args.seconds, 32, established=False, pids=[bare.pid]
                )
                print(tally.line(label), flush=True)
                return tally

            acked, failures = await serve_phases(args, env, texts, answered, measure_bare)
        lost = await missing(url, acked)
        print(
            f"acknowledged {len(acked)} messages, {lost} without a row (lost); "
            f"{failures} answers not 200"
        )
        if args.profile:
            await print_profile(url, texts, args.profile)


async def serve_phases(
    args: argparse.Namespace,
    env: dict[str, str],
    texts: list[str],
    answered: list[str],
    measure_bare: Callable[[str], Awaitable[Tally]],
) -> tuple[list[str], int]:
    """`seguibot serve` with each number of workers: the closed-loop rounds, each after a
    bare phase of its own, then (one worker) the open loop. The ids acknowledged, and how many
    answers were not 200."""
    acked: list[str] = []
    failures = 0
    concurrencies = [int(c) for c in args.clients.split(",") if c]
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        command = [sys.executable, "-m", "bot", "serve", "--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        with server(command, env) as bot:
            base = f"http://127.0.0.1:{port}"
            await all_listening(port, workers)  # (a loaded machine starts them slowly)
            await wait_until_up(base, "/readyz")
            pids = process_tree(bot.pid)
            await closed_loop(base, texts, 1, 8, established=False, pids=[])  # warm up
            for established in (False, True):
                kind = f"{workers}w {'established' if established else 'new sessions'}"
                rates: dict[int, list[float]] = {}
                shares: dict[int, list[float]] = {}
                cpus: dict[int, list[float]] = {}
                cpu_shares: dict[int, list[float]] = {}
                for n in range(args.rounds):
                    # Each round is shared against bare aiohttp measured just before it: the
                    # host's speed drifts by 10-30 % within a run, and one bare phase at the
                    # start charged that drift to whichever phases came late.
                    bare = await measure_bare(f"bare aiohttp, 32 clients (round {n + 1})")
                    bare_cpu = bare.cpu_ms / max(bare.ok, 1)
                    # Every other round runs the concurrencies the other way round: the
                    # database grows and PostgreSQL's autovacuum comes and goes during a
                    # run, and a fixed order would charge that drift to the last one.
                    order = concurrencies if n % 2 == 0 else concurrencies[::-1]
                    for clients in order:
                        tally = await closed_loop(
                            base,
                            answered if established else texts,
                            args.seconds,
                            clients,
                            established=established,
                            pids=pids,
                        )
                        acked += tally.acked
                        failures += tally.server_errors + tally.other
                        cpu = tally.cpu_ms / max(tally.ok, 1)
                        share = tally.rate / bare.rate
                        rates.setdefault(clients, []).append(tally.rate)
                        shares.setdefault(clients, []).append(share)
                        cpus.setdefault(clients, []).append(cpu)
                        cpu_shares.setdefault(clients, []).append(bare_cpu / cpu)
                        label = f"{kind}, {clients} clients"
                        print(f"{tally.line(label)}  ({share:.1%} of bare)", flush=True)
                firsts = rates[concurrencies[0]]
                for clients, measured in rates.items():
                    rate = statistics.median(measured)
                    # Against the first concurrency of the same round, a few seconds apart,
                    # as each share is against its own round's bare: a median of the rounds'
                    # medians set against each other charged the drift between rounds to it.
                    against_first = statistics.median(
                        r / f for r, f in zip(measured, firsts, strict=True)
                    )
                    # The same share by CPU: bare's server CPU per request against this
                    # server's per message. Both move with the host's speed; the share of
                    # throughput also moves with how much of the two cores the load
                    # generator and PostgreSQL leave each server.
                    print(
                        f"  {kind}, {clients} clients: median {rate:.0f} msg/s of "
                        f"{len(measured)} ({statistics.median(shares[clients]):.1%} of bare, "
                        f"{against_first:.0%} of {concurrencies[0]} clients in its round); "
                        "server CPU "
                        f"{statistics.median(cpus[clients]):.2f} ms/msg, "
                        f"{statistics.median(cpu_shares[clients]):.1%} of bare's",
                        flush=True,
                    )
            if workers == 1:
                for rate in [float(r) for r in args.rates.split(",") if r]:
                    await asyncio.sleep(2)
                    tally = await open_loop(base, texts, rate, args.seconds)
                    acked += tally.acked
                    failures += tally.server_errors + tally.other
                    print(tally.line(f"1w open loop {rate:.0f} msg/s"), flush=True)
    return acked, failures


async def print_profile(url: str, texts: list[str], count: int) -> None:
    for path, figures in (await profile(url, texts, count)).items():
        print(
            f"in process, {path + ':':<20} {figures['statements']:.2f} statements, "
            f"CPU {figures['cpu_ms']:.2f} ms, wall {figures['wall_ms']:.2f} ms per message "
            f"({figures['replies']:.2f} replies)",
            flush=True,
        )


async def profile_only(count: int) -> None:
    """Only the in-process figures, on a throw-away database: quick, and fair to run before
    and after a change in turn on a shared machine (the servers' phases need it all)."""
    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        await print_profile(url, realistic_texts(), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--clients", default="8,32,128", help="closed-loop concurrencies")
    parser.add_argument(
        "--rounds", type=int, default=3, help="closed-loop rounds (each concurrency once each)"
    )
    parser.add_argument("--rates", default="100,300", help="open-loop rates, messages/s")
    parser.add_argument("--workers", default="1", help="serve --workers values to measure")
    parser.add_argument(
        "--profile", type=int, default=200, help="messages per in-process path (0: none)"
    )
    parser.add_argument(
        "--profile-only", action="store_true", help="only the in-process statements and CPU"
    )
    args = parser.parse_args()
    asyncio.run(profile_only(args.profile) if args.profile_only else run(args))


if __name__ == "__main__":
    main()

"""Inbound Telegram updates and Twilio WhatsApp webhooks -> reply at the fake API, on PostgreSQL.

One `seguibot serve` process (web chat, Telegram and WhatsApp on) and, in the same run:
1. web chat with bench/core_webchat.py's closed-loop load generator: the baseline;
2. Telegram: `POST /webhooks/telegram` with the secret header, each a new update from one of
   2000 chats, until the reply reaches the fake Bot API (`sendMessage`);
3. WhatsApp: `POST /webhooks/whatsapp`, each signed like Twilio (X-Twilio-Signature over the
   public URL and every parameter), until the reply reaches the fake Messages API (a create).
   The fake answers each create with Twilio's status callbacks (sent, delivered, read): three
   more signed POSTs to the service per reply, as in real traffic.

For 2 and 3, first under the closed loop (as many webhooks as the service answers), then at a
steady rate below that (`--rate`, open loop, as the channels deliver): webhook throughput
(answered 200 per second), end-to-end throughput (replies at the fake per second, from the
first webhook until the last reply of the run arrived) and the latency from posting a webhook
to the fake receiving its reply. Replies are matched through the database: an outbox row's
message follows, in its conversation, the inbound message that caused it, and one recipient's
rows go out in order, so the n-th row of a chat is its n-th arrival at the fake.

CPU per process and phase is read from /proc, to show which process is the bottleneck. The
fakes run in a subprocess by default (`--fakes inprocess` puts them beside the load generator).

Telegram's pacing (about 1 message/s per chat, 30/s overall) is turned off by default so that
it does not set the result; `--telegram-per-second 30` measures with the real cap.

Run: `.venv/bin/python -m bench.channels [--seconds 10] [--concurrency 32]`
Needs PostgreSQL (BENCH_POSTGRES_URL, as bench/core_webchat.py) and ../shared/channels/specs
(the fakes check every call against them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.core_webchat import (
    ROOT,
    closed_loop,
    free_port,
    percentile,
    postgres_database,
    realistic_texts,
    wait_until_up,
)
from handlers.telegram import SECRET_HEADER, message_key
from handlers.telegram import WEBHOOK_PATH as TELEGRAM_PATH
from handlers.whatsapp import INBOUND_PATH as WHATSAPP_PATH
from storage import migrate
from storage.db import Database
from tests.fakes.telegram_api import DEFAULT_TOKEN, Call, FakeTelegramServer
from tests.fakes.twilio_api import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    WHATSAPP_SANDBOX,
    FakeTwilioServer,
    RecordedRequest,
    inbound_whatsapp_params,
    signed_form,
)

CHATS = 2000
WEBHOOK_SECRET = "bench-webhook-secret"  # the fake Bot API's webhook secret, not a real one
TELEGRAM_UPDATE = ROOT / "tests/data/telegram/message_text_private.json"
NAMES = ("Mariana López García", "Luis", "Ana Martínez", "José Ángel", "Sofía", "Carlos Ruiz")
WARM_UP, MEASURED = 0, 1  # blocks of chats: the measured run starts with fresh conversations
CLOSED = "closed loop"
LIFTED = 1_000_000  # telegram.overall_per_second when the 30/s cap is off

_T = TypeVar("_T")
Arrival = tuple[str, float]  # (recipient, time.monotonic() when the fake received the reply)


def telegram_chat(block: int, n: int) -> int:
    return 7_100_000_000 + block * 100_000 + n


def whatsapp_address(block: int, n: int) -> str:
    # Mexico's legacy mobile form (+52 1 55 ...), as WhatsApp still sends it.
    return f"whatsapp:+521553{block}{n:06d}"


# --- the fakes, and when replies reached them ------------------------------------------------


class _Stamped(list[_T]):
    """A fake's public record list that also notes when each reply arrived.

    CLOCK_MONOTONIC is one clock for the whole machine, so times taken in a fakes subprocess
    compare with the load generator's.
    """

    def __init__(self, recipient: Callable[[_T], str | None], into: list[Arrival]) -> None:
        super().__init__()
        self._recipient = recipient
        self._into = into

    def append(self, item: _T) -> None:
        super().append(item)
        recipient = self._recipient(item)
        if recipient is not None:
            self._into.append((recipient, time.monotonic()))


def _telegram_reply(call: Call) -> str | None:
    return str(call.params["chat_id"]) if call.method == "sendMessage" else None


def _twilio_reply(request: RecordedRequest) -> str | None:
    if request.route == "create" and request.status == 201:
        return request.params.get("To")
    return None


class Fakes(Protocol):
    telegram_url: str
    twilio_url: str

    async def arrivals(self, channel: str) -> Sequence[Arrival]:
        """Every reply that reached the channel's fake so far, in order."""

    async def settle(self) -> None:
        """Wait for Twilio's status callbacks in flight."""

    async def report(self) -> dict[str, int]:
        """What went wrong at the fakes (all zeros when nothing did)."""


class LocalFakes:
    """Both fakes in this process."""

    def __init__(self, tg: FakeTelegramServer, tw: FakeTwilioServer) -> None:
        self.tg, self.tw = tg, tw
        self.telegram_url, self.twilio_url = tg.base_url, tw.base_url
        self.replies: dict[str, list[Arrival]] = {"telegram": [], "whatsapp": []}
        tg.calls = _Stamped(_telegram_reply, self.replies["telegram"])
        tw.requests = _Stamped(_twilio_reply, self.replies["whatsapp"])
        for block, n in itertools.product((WARM_UP, MEASURED), range(CHATS)):
            # The fake applies WhatsApp's 24-hour window: these senders have just written.
            tw.received_from(whatsapp_address(block, n))

    async def arrivals(self, channel: str) -> Sequence[Arrival]:
        return self.replies[channel]

    async def settle(self) -> None:
        await self.tw.settle(timeout=60)

    async def report(self) -> dict[str, int]:
        creates = self.tw.creates
        answers = [c.response_status for c in self.tw.callbacks]
        return {
            "telegram sendMessage": len(self.tg.calls_to("sendMessage")),
            "telegram rejected (bad call)": len(self.tg.rejected),
            "telegram failed": len(self.tg.failures),
            "twilio creates": len(creates),
            "twilio creates not 201": sum(r.status != 201 for r in creates),
            "status callbacks posted": len(answers),
            "status callbacks not 2xx": sum(not (a and 200 <= a < 300) for a in answers),
        }


@contextlib.asynccontextmanager
async def local_fakes() -> AsyncIterator[LocalFakes]:
    # Rejections are counted and reported here rather than raised on exit.
    async with FakeTelegramServer(fail_on_rejected=False) as tg, FakeTwilioServer() as tw:
        yield LocalFakes(tg, tw)


async def serve_fakes() -> None:
    """`--serve-fakes`: the fakes in a process of their own, read over a small HTTP API."""
    async with local_fakes() as fakes:

        async def arrivals(request: web.Request) -> web.Response:
            since = int(request.query.get("since", "0"))
            return web.json_response(fakes.replies[request.match_info["channel"]][since:])

        async def settle(request: web.Request) -> web.Response:
            await fakes.settle()
            return web.json_response({})

        async def report(request: web.Request) -> web.Response:
            return web.json_response(await fakes.report())

        app = web.Application()
        app.router.add_get("/arrivals/{channel}", arrivals)
        app.router.add_post("/settle", settle)
        app.router.add_get("/report", report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        urls = {"telegram": fakes.telegram_url, "twilio": fakes.twilio_url}
        print(json.dumps({**urls, "control": f"http://127.0.0.1:{port}"}), flush=True)
        # Serve until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()


class RemoteFakes:
    """Both fakes in a subprocess (`--serve-fakes`)."""

    def __init__(self, urls: Mapping[str, str], session: aiohttp.ClientSession) -> None:
        self.telegram_url, self.twilio_url = urls["telegram"], urls["twilio"]
        self.control = urls["control"]
        self.session = session
        self.replies: dict[str, list[Arrival]] = {"telegram": [], "whatsapp": []}

    async def arrivals(self, channel: str) -> Sequence[Arrival]:
        known = self.replies[channel]
        url = f"{self.control}/arrivals/{channel}?since={len(known)}"
        async with self.session.get(url) as response:
            known.extend((recipient, at) for recipient, at in await response.json())
        return known

    async def settle(self) -> None:
        async with self.session.post(self.control + "/settle") as response:
            await response.read()

    async def report(self) -> dict[str, int]:
        async with self.session.get(self.control + "/report") as response:
            found: dict[str, int] = await response.json()
            return found


@contextlib.asynccontextmanager
async def remote_fakes() -> AsyncIterator[tuple[RemoteFakes, int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.channels",
        "--serve-fakes",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line:
            raise RuntimeError("the fakes subprocess exited before it was ready")
        async with aiohttp.ClientSession() as session:
            yield RemoteFakes(json.loads(line), session), process.pid
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()


# --- the service --------------------------------------------------------------------------


@dataclass
class Service:
    base: str
    pid: int
    stderr: str = ""  # what it wrote, once it stopped


@contextlib.contextmanager
def service(port: int, env: Mapping[str, str], profile: Path | None) -> Iterator[Service]:
    """`seguibot serve` as a subprocess; its stderr goes to a file (a pipe nobody reads fills up
    and stalls the service) and is read back once it stopped."""
    command = [sys.executable, "-m", "bot", "serve", "--port", str(port)]
    if profile is not None:
        command[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", str(profile)]
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        process = subprocess.Popen(
            command, env=dict(env), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
        )
        running = Service(f"http://127.0.0.1:{port}", process.pid)
        try:
            yield running
        finally:
            process.terminate()  # SIGTERM: a graceful stop, so pyinstrument writes its report
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            stderr.seek(0)
            running.stderr = stderr.read()


def stderr_summary(written: str) -> tuple[int, collections.Counter[str], list[str]]:
    """Lines written, their (level, event) counts, and the first lines that are not JSON."""
    events: collections.Counter[str] = collections.Counter()
    other: list[str] = []
    lines = written.splitlines()
    for line in lines:
        try:
            entry = json.loads(line)
            event = str(entry["event"])
        except (ValueError, KeyError, TypeError):
            other.append(line)
            continue
        # One key per kind of event: asyncio's "Task exception was never retrieved" names
        # the task and its exception on the next line.
        summary = " / ".join(event.splitlines()[:2])
        if entry.get("exc"):  # the exception itself is the traceback's last line
            summary += " / " + str(entry["exc"]).strip().splitlines()[-1]
        summary = re.sub(r"\d+", "N", summary)[:300]
        events[f"{entry['level']} {summary}"] += 1
    return len(lines), events, other[:20]


# --- CPU, to see which process is the bottleneck --------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    return 0.0


def _postgres_cpu() -> dict[int, float]:
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            line = stat.read_text()
            if "(postgres)" in line:
                fields = line.rsplit(")", 1)[1].split()
                found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def _machine_busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait


PER_PHASE = ("seconds", "transactions")
TRANSACTIONS = text(
    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
)


@dataclass
class Meter:
    """Per phase: the CPU each process of the benchmark used, in cores, and the database's
    transactions.

    PostgreSQL's CPU is the sum of its processes alive at the end (a backend that exited
    meanwhile takes its time with it: a lower bound). Its transaction counts reach
    pg_stat_database up to a second late, and include the few queries of this benchmark.
    """

    pids: Mapping[str, int]
    db: AsyncEngine | None = None
    _start: dict[str, float] = field(default_factory=dict)
    _postgres: dict[int, float] = field(default_factory=dict)
    _started: float = 0.0
    _transactions: int = 0

    def _sample(self) -> dict[str, float]:
        sample = {name: _process_cpu(pid) for name, pid in self.pids.items()}
        sample["machine"] = _machine_busy()
        return sample

    async def _count(self) -> int:
        return await scalar(self.db, TRANSACTIONS) if self.db is not None else 0

    async def start(self) -> None:
        self._transactions = await self._count()
        self._start, self._postgres = self._sample(), _postgres_cpu()
        self._started = time.monotonic()

    async def stop(self) -> dict[str, float]:
        """Cores used per process since `start`, `seconds` elapsed and `transactions`."""
        elapsed = time.monotonic() - self._started
        end, postgres = self._sample(), _postgres_cpu()
        used = {name: (end[name] - self._start[name]) / elapsed for name in end}
        postgres_used = sum(t - self._postgres.get(pid, 0.0) for pid, t in postgres.items())
        used["postgres"] = postgres_used / elapsed
        if self.db is not None:
            await asyncio.sleep(1)  # let the last transactions reach the statistics
        transactions = await self._count() - self._transactions
        return used | {"seconds": elapsed, "transactions": transactions}


# --- the load: webhooks as the channels send them -------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    key: str  # the message id the service stores (Telegram "chat:message", Twilio MessageSid)
    path: str
    body: bytes
    headers: Mapping[str, str]


def telegram_webhooks(texts: list[str], block: int) -> Iterator[Webhook]:
    """Updates in the recorded shape of a private text message, one chat after another."""
    recorded = json.loads(TELEGRAM_UPDATE.read_text(encoding="utf-8"))
    message = recorded["message"]
    headers = {"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
    for n in itertools.count():
        chat = telegram_chat(block, n % CHATS)
        first, _, last = NAMES[n % len(NAMES)].partition(" ")
        name = {"first_name": first} | ({"last_name": last} if last else {})
        # Telegram numbers a chat's messages in both directions from one counter; the fake
        # numbers the bot's from 1 in a chat it has not seen, so ours start past that.
        message_id = 10_000 + n // CHATS
        update = {
            "update_id": 800_000_000 + block * 10_000_000 + n,
            "message": {
                **message,
                "message_id": message_id,
                "from": {"id": chat, "is_bot": False, **name, "language_code": "es"},
                "chat": {"id": chat, **name, "type": "private"},
                "date": int(time.time()),
                "text": texts[n % len(texts)],
            },
        }
        # Compact UTF-8 JSON, as Telegram posts it.
        body = json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()
        yield Webhook(message_key(chat, message_id), TELEGRAM_PATH, body, headers)


def whatsapp_webhooks(texts: list[str], block: int, public_url: str) -> Iterator[Webhook]:
    """Inbound WhatsApp messages as Twilio posts them, signed over the public URL."""
    url = public_url + WHATSAPP_PATH
    for n in itertools.count():
        params = inbound_whatsapp_params(
            whatsapp_address(block, n % CHATS),
            texts[n % len(texts)],
            NAMES[n % len(NAMES)],
            account_sid=FAKE_ACCOUNT_SID,
        )
        form, headers = signed_form(url, params, FAKE_AUTH_TOKEN)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        yield Webhook(params["MessageSid"], WHATSAPP_PATH, urlencode(form).encode(), headers)


@dataclass
class Load:
    """What the load generator sent and how the service answered."""

    started: float = 0.0
    seconds: float = 0.0
    posted: dict[str, float] = field(default_factory=dict)  # key -> monotonic time posted
    answers: collections.Counter[int | str] = field(default_factory=collections.Counter)
    answer_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.answers[200]

    async def post(self, session: aiohttp.ClientSession, base: str, webhook: Webhook) -> None:
        posted = self.posted[webhook.key] = time.monotonic()
        status: int | str
        try:
            async with session.post(
                base + webhook.path, data=webhook.body, headers=webhook.headers
            ) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        self.answers[status] += 1
        if status == 200:
            self.answer_ms.append((time.monotonic() - posted) * 1000)


async def post_closed_loop(
    base: str, webhooks: Iterator[Webhook], seconds: float, concurrency: int
) -> Load:
    """core_webchat's closed loop for webhooks: `concurrency` senders, each as fast as answered."""
    load = Load()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def sender() -> None:
            while time.monotonic() < deadline:
                await load.post(session, base, next(webhooks))

        load.started = time.monotonic()
        deadline = load.started + seconds
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        load.seconds = time.monotonic() - load.started
    return load


async def post_open_loop(
    base: str, webhooks: Iterator[Webhook], rate: float, seconds: float
) -> Load:
    """core_webchat's open loop for webhooks: a steady `rate`, whatever the answers do."""
    load = Load()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = []
        load.started = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = load.started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(load.post(session, base, next(webhooks))))
        await asyncio.gather(*tasks)
        load.seconds = time.monotonic() - load.started
    return load


# --- from webhook to reply ------------------------------------------------------------------

# Each outbox row with the inbound message that caused it: the last inbound message of the
# conversation before the reply (the engine stores both in one transaction).
REPLY_ROWS = text(
    """
    SELECT o.recipient, o.state,
           (SELECT i.channel_message_id FROM messages i
             WHERE i.conversation_id = m.conversation_id AND i.direction = 'in' AND i.id < m.id
             ORDER BY i.id DESC LIMIT 1)
      FROM outbox o JOIN messages m ON m.id = o.message_id
     WHERE o.channel = :channel AND o.id > :after
     ORDER BY o.id
    """
)
UNSETTLED = text(
    "SELECT count(*) FROM outbox WHERE channel = :channel AND id > :after"
    " AND state IN ('pending', 'sending')"
)


async def scalar(db: AsyncEngine, statement: Any, **params: object) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(statement, params)).scalar_one())


@dataclass
class ChannelResult:
    channel: str
    mode: str  # "closed loop" or "steady N/s"
    load: Load
    replies: int = 0  # outbox rows the run's webhooks produced
    arrivals: list[Arrival] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    timed_out: bool = False
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def webhook_rate(self) -> float:
        return self.load.ok / self.load.seconds

    @property
    def e2e_seconds(self) -> float:
        """From the first webhook to the last reply's arrival."""
        return max((at for _, at in self.arrivals), default=self.load.started) - self.load.started

    @property
    def e2e_rate(self) -> float:
        return len(self.arrivals) / self.e2e_seconds if self.arrivals else 0.0

    @property
    def during_load(self) -> int:
        """Replies that arrived while webhooks were still being posted."""
        end = self.load.started + self.load.seconds
        return sum(at <= end for _, at in self.arrivals)


async def run_channel(
    channel: str,
    mode: str,
    send: Callable[[], Awaitable[Load]],
    fakes: Fakes,
    db: AsyncEngine,
    *,
    timeout: float,
    meter: Meter,
) -> ChannelResult:
    """Post the webhooks, then wait (at most `timeout`) for all their replies."""
    after = await scalar(db, text("SELECT coalesce(max(id), 0) FROM outbox"))
    mark = len(await fakes.arrivals(channel))
    await meter.start()
    result = ChannelResult(channel, mode, await send())
    # Every answered webhook has committed its outbox row: the run's replies are all known now.
    result.replies = await scalar(
        db,
        text("SELECT count(*) FROM outbox WHERE channel = :channel AND id > :after"),
        channel=channel,
        after=after,
    )
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 1
    while len(await fakes.arrivals(channel)) - mark < result.replies:
        if time.monotonic() > deadline:
            result.timed_out = True
            break
        if time.monotonic() > next_check:
            # Rows that failed or were blocked never arrive: stop once nothing is left to send.
            if not await scalar(db, UNSETTLED, channel=channel, after=after):
                break
            next_check = time.monotonic() + 1
        await asyncio.sleep(0.02)
    result.cpu = await meter.stop()
    result.arrivals = list((await fakes.arrivals(channel))[mark:])
    # The last replies' rows may still be settling; give them a moment.
    for _ in range(100):
        if not await scalar(db, UNSETTLED, channel=channel, after=after):
            break
        await asyncio.sleep(0.05)
    async with db.connect() as conn:
        rows = (await conn.execute(REPLY_ROWS, {"channel": channel, "after": after})).all()
    result.states.update(str(state) for _, state, _ in rows)
    result.latencies_ms = match(rows, result.arrivals, result.load.posted)
    await fakes.settle()  # no status callbacks left over for the next phase
    return result


def match(
    rows: Sequence[Any], arrivals: Sequence[Arrival], posted: Mapping[str, float]
) -> list[float]:
    """Milliseconds from posting each webhook to its reply's arrival at the fake."""
    queues: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
    for recipient, at in arrivals:
        queues[recipient].append(at)
    latencies = []
    for recipient, state, trigger in rows:
        if state not in ("done", "sending") or not queues[recipient]:
            continue  # failed or blocked rows never reached the fake
        at = queues[recipient].popleft()
        if trigger in posted:
            latencies.append((at - posted[trigger]) * 1000)
    return latencies


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    webchat_rate: float = 0.0
    webchat_cpu: dict[str, float] = field(default_factory=dict)
    channels: list[ChannelResult] = field(default_factory=list)
    fakes_report: dict[str, int] = field(default_factory=dict)
    stderr: tuple[int, collections.Counter[str], list[str]] = (0, collections.Counter(), [])


def service_env(url: str, base: str, fakes: Fakes, telegram_per_second: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGUIBOT_", "TWILIO_"))}
    env.update(
        DATABASE_URL=url,
        SEGUIBOT_LOGGING_LEVEL="WARNING",
        SEGUIBOT_PUBLIC_URL=base,
        SEGUIBOT_TELEGRAM_TOKEN=DEFAULT_TOKEN,
        SEGUIBOT_TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SEGUIBOT_TELEGRAM_API_BASE_URL=fakes.telegram_url,
        SEGUIBOT_TELEGRAM_PER_CHAT_INTERVAL="0",
        SEGUIBOT_TELEGRAM_OVERALL_PER_SECOND=str(telegram_per_second),
        TWILIO_ACCOUNT_SID=FAKE_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN,
        SEGUIBOT_TWILIO_API_BASE_URL=fakes.twilio_url,
        SEGUIBOT_WHATSAPP_FROM=WHATSAPP_SANDBOX,
    )
    return env


async def measure(args: argparse.Namespace, fakes: Fakes, fakes_pid: int | None, url: str) -> Run:
    run = Run()
    texts = realistic_texts()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(url, base, fakes, args.telegram_per_second)
    db = create_async_engine(url)
    try:
        with service(port, env, args.profile) as bot:
            await wait_until_up(bot.base, "/readyz")
            pids = {"service": bot.pid, "bench": os.getpid()}
            if fakes_pid is not None:
                pids["fakes"] = fakes_pid
            meter = Meter(pids, db)
            closed = (args.seconds, args.concurrency)

            await closed_loop(bot.base, texts, 2, args.concurrency)  # warm up
            await meter.start()
            run.webchat_rate = await closed_loop(bot.base, texts, args.seconds, args.concurrency)
            run.webchat_cpu = await meter.stop()

            channels: list[tuple[str, Callable[[int], Iterator[Webhook]]]] = [
                ("telegram", lambda block: telegram_webhooks(texts, block)),
                ("whatsapp", lambda block: whatsapp_webhooks(texts, block, base)),
            ]
            for channel, webhooks in channels:
                warm, fresh = webhooks(WARM_UP), webhooks(MEASURED)
                await run_channel(
                    channel,
                    "warm-up",
                    functools.partial(post_closed_loop, bot.base, warm, 2, args.concurrency),
                    fakes,
                    db,
                    timeout=args.timeout,
                    meter=Meter({}),
                )
                phases: list[tuple[str, Callable[[], Awaitable[Load]]]] = [
                    (CLOSED, functools.partial(post_closed_loop, bot.base, fresh, *closed))
                ]
                if args.rate:
                    steady = (args.rate, args.seconds)
                    phases.append(
                        (
                            f"steady {args.rate:g}/s",
                            functools.partial(post_open_loop, bot.base, fresh, *steady),
                        )
                    )
                for mode, send in phases:
                    run.channels.append(
                        await run_channel(
                            channel, mode, send, fakes, db, timeout=args.timeout, meter=meter
                        )
                    )
            await fakes.settle()
            run.fakes_report = await fakes.report()
        run.stderr = stderr_summary(bot.stderr)
    finally:
        await db.dispose()
    return run


def report(args: argparse.Namespace, run: Run, load_average: str) -> None:
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average before: {load_average}"
    )
    cap = (
        "off"
        if args.telegram_per_second >= LIFTED
        else f"{args.telegram_per_second}/s (the default)"
    )
    steady = f", then steady {args.rate:g}/s" if args.rate else ""
    print(
        f"settings: telegram.per_chat_interval=0 (Telegram's ~1 msg/s per chat pacing off), "
        f"overall Telegram cap {cap}; outbox defaults (8 sends in flight); Twilio status "
        f"callbacks on (3 signed POSTs per reply); fakes {args.fakes}; closed loop of "
        f"{args.concurrency} senders{steady}, {args.seconds:g} s each; {CHATS} chats per channel"
    )
    if args.profile:
        print(f"PROFILED with pyinstrument ({args.profile}): numbers are slower than normal")
    print(f"web chat (baseline):  {run.webchat_rate:6.1f} msg/s answered (reply in the answer)")
    for r in run.channels:
        lat, answered = r.latencies_ms, r.load.answer_ms
        print(
            f"{r.channel} {r.mode}: webhooks {r.webhook_rate:.1f}/s answered 200 "
            f"(answer p50 {percentile(answered, 50):.0f} ms, p99 {percentile(answered, 99):.0f} "
            f"ms); end to end {r.e2e_rate:.1f} replies/s ({len(r.arrivals)}/{r.replies} replies "
            f"in {r.e2e_seconds:.1f} s, {r.during_load} while posting"
            f"{', TIMED OUT' if r.timed_out else ''}); webhook -> reply at the fake "
            f"p50 {percentile(lat, 50) if lat else 0:.0f} ms, "
            f"p99 {percentile(lat, 99) if lat else 0:.0f} ms ({len(lat)} matched)"
            + (f"; e2e / web chat {r.e2e_rate / run.webchat_rate:.2f}" if r.mode == CLOSED else "")
        )
        without = r.load.ok - r.replies
        others = {k: v for k, v in r.load.answers.items() if k != 200}
        print(
            f"    {r.load.ok} webhooks answered 200, {without} without a reply (handed off or "
            f"opted out), outbox rows {dict(r.states)}, other answers {others or 'none'}"
        )
    # Service CPU per message: for the channels it includes sending the reply and, on
    # WhatsApp, taking the reply's three status callbacks.
    phases = [("web chat", run.webchat_cpu, run.webchat_rate * args.seconds)]
    phases += [(f"{r.channel} {r.mode}", r.cpu, r.load.ok) for r in run.channels]
    print(f"CPU in cores (of {os.cpu_count()}) per phase, posting and waiting for replies:")
    for name, cpu, messages in phases:
        cores = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k not in PER_PHASE)
        per_message = cpu["service"] * cpu["seconds"] / messages * 1000 if messages else 0
        print(
            f"  {name:<22} {cores}; per message: service {per_message:.1f} ms CPU, "
            f"{cpu['transactions'] / messages if messages else 0:.1f} transactions"
        )
    print("fakes: " + ", ".join(f"{k} {v}" for k, v in run.fakes_report.items()))
    lines, events, other = run.stderr
    print(f"service stderr: {lines} lines")
    for event, count in events.most_common():
        print(f"  {count:5d} x {event}")
    for line in other:
        print(f"  | {line}")


async def main() -> None:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, default=10.0, help="steady webhooks/s per channel (0: skip)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a run's last replies"
    )
    parser.add_argument(
        "--fakes",
        choices=("subprocess", "inprocess"),
        default="subprocess",
        help="where the fake Bot API and Twilio run (default: their own process)",
    )
    parser.add_argument(
        "--telegram-per-second",
        type=int,
        default=LIFTED,
        help="telegram.overall_per_second (default: lifted; Telegram's real cap is 30)",
    )
    parser.add_argument("--profile", type=Path, help="run the service under pyinstrument")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        await serve_fakes()
        return

    load_average = " ".join(f"{value:.2f}" for value in os.getloadavg())
    async with postgres_database() as url:
        database = Database(url)
        await migrate.upgrade(database)
        await database.dispose()
        if args.fakes == "inprocess":
            async with local_fakes() as local:
                run = await measure(args, local, None, url)
        else:
            async with remote_fakes() as (remote, pid):
                run = await measure(args, remote, pid, url)
    report(args, run, load_average)


if __name__ == "__main__":
    asyncio.run(main())

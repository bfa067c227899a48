"""Publishing a big catalogue: 500 intents x 30 examples, validated, stored, and picked up by
a second process's poll, from the publish call until that process answers with it.

    .venv/bin/python -m bench.scripts_publish [--runs 3] [--database-url URL] [--signal]

Two `ScriptVersions` on one database (a fresh migrated SQLite file unless `--database-url`
names another, e.g. an empty migrated PostgreSQL): the first publishes, the second runs its
real poll (`nlu.reload_seconds`, 2 s) and has to train the new version itself (reusing what
the publisher recorded with the version, `intents.matcher.Training`); the matcher and n-gram
caches both share in this one process are emptied after the publication so that the second pays
the training a separate process would. The catalogue is the synthetic one of
`bench.nlu_latency` (fixed seed; each run changes one example so every version is new) plus the
packaged scripts' texts the bot needs (`scripts:`). Besides wall time, the CPU time this one
process spends (`time.process_time`) is given for each half: on a machine shared with other
work, wall time grows with the load and CPU time much less.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.nlu_latency import synthetic_catalogue
from bot.conversation import scripts as versions_module
from bot.conversation.scripts import ScriptVersions, Validator
from bot.conversation.understanding import Understanding, from_file
from bot.desk.accounts import Who
from intents import classifier, editing
from intents.catalogue import DEFAULT_SCRIPTS
from storage import migrate
from storage.db import Database

GOAL_SECONDS = 5.0


def big_scripts(intents: int, examples: int) -> dict[str, Any]:
    factory = editing.read(DEFAULT_SCRIPTS.read_text(encoding="utf-8"))
    catalogue = synthetic_catalogue(intents, examples)
    return {
        "intents": {
            name: {
                "label": entry.label,
                "examples": [example.text for example in entry.examples],
                "replies": [f"Respuesta de {name}, {{nombre}}.", "Otra variante."],
            }
            for name, entry in catalogue.entries.items()
        },
        "scripts": factory["scripts"],
    }


Result = tuple[float, float, float, float, float]  # wall: publish, reload, total; CPU: both


async def run(url: str, runs: int, interval: float, signal: bool) -> list[Result]:
    data = big_scripts(500, 30)
    factory = DEFAULT_SCRIPTS.read_text(encoding="utf-8")
    dbs = [Database(url), Database(url)]
    results: list[Result] = []
    try:
        await migrate.upgrade(dbs[0])
        first, second = (
            ScriptVersions(
                db,
                Understanding(from_file(None, "MX", {})),
                Validator("MX"),
                factory=factory,
                interval=interval,
            )
            for db in dbs
        )
        if signal:
            # What the app's live signals do between processes (PostgreSQL's LISTEN/NOTIFY),
            # here one direct call: the second loads the version at once, not at its poll.
            first.on_published = second.nudge
        await first.start()
        await second.start()
        watching = asyncio.create_task(second.watch())
        for n in range(runs):
            data["intents"]["synthetic.i000"]["examples"][0] = f"ejemplo cambiado {n}"
            body = editing.write(data)
            started, cpu = time.perf_counter(), time.process_time()
            version = await first.publish(body, f"bench {n}", Who(None, "bench"))
            published, cpu_published = time.perf_counter() - started, time.process_time() - cpu
            # The second pays its own training, from cold caches as a separate process would.
            versions_module._TRAINED.clear()
            classifier._char_ngrams.cache_clear()
            await _loaded(second, version.number)
            everywhere = time.perf_counter() - started
            cpu_reloaded = time.process_time() - cpu - cpu_published
            held = second.understanding.current if second.understanding else None
            assert held is not None and len(held.catalogue.intents) == 500
            results.append(
                (published, everywhere - published, everywhere, cpu_published, cpu_reloaded)
            )
            print(
                f"run {n + 1}: version {version.number} ({len(body) // 1024} KiB) published in "
                f"{published:.2f} s; the other process answered with it {everywhere:.2f} s after "
                f"the publish call ({everywhere - published:.2f} s of poll wait + training); "
                f"CPU {cpu_published:.2f} s to publish + {cpu_reloaded:.2f} s to reload"
            )
        watching.cancel()
    finally:
        for db in dbs:
            await db.dispose()
    return results


async def _loaded(versions: ScriptVersions, number: int) -> None:
    """Until `versions` holds version `number` (its own poll loads it)."""
    while True:
        if versions.loaded == number:
            return
        await asyncio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--interval", type=float, default=2.0, help="the poll (reload_seconds)")
    parser.add_argument(
        "--signal",
        action="store_true",
        help="the publisher wakes the other at once, as the app's live signals do on PostgreSQL",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        results = asyncio.run(run(url, args.runs, args.interval, args.signal))
    totals = [total for _, _, total, _, _ in results]
    cpu = [published + reloaded for _, _, _, published, reloaded in results]
    print(
        f"publish: median {statistics.median(r[0] for r in results):.2f} s; publish to "
        f"reloaded elsewhere: median {statistics.median(totals):.2f} s, max {max(totals):.2f} s "
        f"(goal < {GOAL_SECONDS:.0f} s: {'met' if max(totals) < GOAL_SECONDS else 'NOT met'}); "
        f"CPU: publish median {statistics.median(r[3] for r in results):.2f} s, reload median "
        f"{statistics.median(r[4] for r in results):.2f} s, both median "
        f"{statistics.median(cpu):.2f} s"
    )


if __name__ == "__main__":
    main()

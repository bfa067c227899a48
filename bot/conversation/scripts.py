"""Script versions: the scripts live in the database, versioned; admins publish, roll back and
keep a shared draft; every process follows the live version without a restart.

The live version is the highest number in `script_versions`. Publishing validates the whole
version first (the catalogue loads, the matcher trains, every script the bot needs has a reply,
placeholders are ones the service fills): a version that fails never goes live, and the error
names the intent and the problem. Each process polls the live number (an index lookup) every
`interval` seconds and, when it changed, trains the new version off the event loop and swaps
it into the app's `Understanding` (one assignment).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from bot.conversation.understanding import (
    Knowledge,
    Trained,
    Understanding,
    sequences_in,
    sequences_of,
)
from bot.core.errors import ConfigError, InvalidInput, NotFound
from bot.core.materials import Material, VariantProblem, problems
from bot.core.model import utcnow
from bot.core.scripts import Renderer
from bot.desk.accounts import Who
from bot.settings import SequenceSettings, SequencesInvalid
from intents import Catalogue, CatalogueError, Matcher, editing, parse_catalogue
from intents.matcher import Training
from intents.normalize import Normalizer, default_normalizer
from intents.promises import Promises
from storage.db import Database, is_conflict, is_unavailable
from storage.models import ScriptVersion
from storage.scripts import Inbound
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

PUBLISHED = "scripts_published"
FACTORY_COMMENT = "Guiones de fábrica"


class ScriptsInvalid(InvalidInput):
    """A version that cannot go live; the message names the intent (or script, or sequence and
    step) and the problem. `reason` and `facts`, when set, say it as data (the console words it
    in Spanish): a sequence's problems have them. `materials`: the variants whose materials
    refused it (a promise with nothing to send)."""

    def __init__(
        self,
        problem: str,
        reason: str = "",
        facts: Mapping[str, str] | None = None,
        *,
        materials: Sequence[VariantProblem] = (),
    ) -> None:
        super().__init__(problem, code="scripts_invalid", problem=problem)
        self.problem = problem
        self.reason = reason
        self.facts = dict(facts or {})
        self.materials = tuple(materials)


def material_problems(
    catalogue: Catalogue, library: Sequence[Material], promises: Promises
) -> list[VariantProblem]:
    """What is wrong with the materials every reply variant offers (bot.core.materials)."""
    found: list[VariantProblem] = []
    for script in (*catalogue.intents, *catalogue.scripts):
        texts = catalogue.replies(script)
        found.extend(
            problems(
                script,
                texts,
                catalogue.offered(script),
                library,
                [promises.found(text) for text in texts],
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Draft:
    body: str
    base: int  # the live version it started from
    updated_at: datetime | None
    updated_by: int | None
    saved: bool  # False: there is no draft yet, this is the live version's text


@dataclass(frozen=True, slots=True)
class Validator:
    """Builds the `Knowledge` of a scripts text, or says why it cannot be used."""

    region: str
    required: tuple[str, ...] = ()  # scripts the configuration names (the web chat's greeting)
    # config.yaml's sequences: those of a version without its own `sequences:`
    sequences: Mapping[str, SequenceSettings] = dataclasses.field(default_factory=dict)

    def build(
        self, body: str, source: str, *, published: bool = False, trained: Training | None = None
    ) -> Knowledge:
        """Train on `body` (named `source` in errors). Blocking: run it in a thread.
        `published`: a version checked when it was published (duplicate examples are not
        looked for again). `trained`: what the publisher's training recorded, reused.

        Raises:
            ScriptsInvalid: naming where and what.
        """
        base = default_normalizer()
        remembering = _Remembering(base.words, base.emojis)  # checking and training share it
        try:
            catalogue = parse_catalogue(
                body, source, overlaps=not published, normalizer=remembering
            )
        except CatalogueError as exc:
            raise ScriptsInvalid(str(exc)) from None
        try:
            sequences = sequences_of(catalogue, self.sequences)
        except SequencesInvalid as exc:
            raise ScriptsInvalid(f"{source}: {exc}", exc.code, exc.details) from None
        matcher = _trained(body, self.region, catalogue, remembering, trained)
        knowledge = Knowledge(catalogue, Trained(matcher), version=source, sequences=sequences)
        try:
            Renderer(Understanding(knowledge), {}).check((*catalogue.intents, *self.required))
        except ConfigError as exc:
            raise ScriptsInvalid(str(exc)) from None
        return knowledge


# Matchers of recent scripts texts by (sha256, region): the live one, the draft being tried, the
# version a rollback returns to. Training takes seconds; the same text never trains twice.
_TRAINED: OrderedDict[tuple[str, str], Matcher] = OrderedDict()
_TRAINED_KEEP = 6
_TRAINED_LOCK = threading.Lock()


def _key(body: str, region: str) -> tuple[str, str]:
    return hashlib.sha256(body.encode()).hexdigest(), region


def remember(body: str, region: str, matcher: Matcher) -> None:
    with _TRAINED_LOCK:
        _TRAINED[_key(body, region)] = matcher
        _TRAINED.move_to_end(_key(body, region))
        while len(_TRAINED) > _TRAINED_KEEP:
            _TRAINED.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Remembering(Normalizer):
    """The normaliser, remembering each text: finding duplicate examples and training then
    normalise the same examples once (a third of a big catalogue's training time)."""

    memo: dict[str, str] = dataclasses.field(default_factory=dict)

    def __call__(self, text: str) -> str:
        found = self.memo.get(text)
        if found is None:
            found = self.memo[text] = Normalizer.__call__(self, text)
        return found


def _trained(
    body: str,
    region: str,
    catalogue: Catalogue,
    normalizer: Normalizer,
    training: Training | None = None,
) -> Matcher:
    """The matcher of one scripts text (`catalogue`, read from it), trained once."""
    with _TRAINED_LOCK:
        found = _TRAINED.get(_key(body, region))
        if found is not None:
            _TRAINED.move_to_end(_key(body, region))
            return found
    started = time.perf_counter()
    trained = Matcher.from_catalogue(
        catalogue, default_region=region, normalizer=normalizer, training=training
    )
    # Messages are normalised by the plain one: the memo served training only.
    matcher = dataclasses.replace(trained, normalizer=default_normalizer())
    log.info(
        "nlu_trained",
        extra={
            "intents": len(catalogue.intents),
            "seconds": round(time.perf_counter() - started, 3),
            "reused": training is not None and trained.training == training,
        },
    )
    remember(body, region, matcher)
    return matcher


def source(number: int) -> str:
    return f"versión {number}"


class ScriptVersions:
    """Publishing, rolling back, the draft, and following the live version."""

    def __init__(
        self,
        db: Database,
        understanding: Understanding | None,
        validator: Validator,
        *,
        factory: str,
        interval: float = 2.0,
        library: Callable[[], Awaitable[Sequence[Material]]] | None = None,
        promises: Promises | None = None,
        on_published: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        # The materials library and the promise phrases, for the check at publish.
        self.library = library
        self.promises = promises or Promises()
        self.understanding = understanding
        self.validator = validator
        self.factory = factory  # the packaged or configured scripts: version 1
        self.interval = interval
        # Told after each publication (the app signals the other processes, which `nudge`).
        self.on_published = on_published
        self._nudged = asyncio.Event()
        self.loaded: int | None = None  # the version the understanding holds
        self._held = factory  # the text the understanding was trained on
        self._failed: int | None = None
        self._lock = asyncio.Lock()

    # --- following the live version ---------------------------------------------------------

    async def start(self) -> None:
        """At start-up: make the factory scripts version 1 if there is none, then load the live
        version (a live version that fails to load leaves the factory scripts in place)."""
        async with UnitOfWork(self.db) as uow:
            if await uow.scripts.live_number() is None:
                uow.scripts.add(
                    ScriptVersion(
                        number=1, body=self.factory, comment=FACTORY_COMMENT, created_at=utcnow()
                    )
                )
                with contextlib.suppress(IntegrityError):  # another process made it first
                    await uow.commit()
        await self.sync()
        if self.understanding is not None:  # the live version may have failed to load
            await asyncio.to_thread(self.understanding.current.trained)

    async def sync(self) -> bool:
        """Load the live version when it is not the one held. True when it changed."""
        async with self._lock:
            async with UnitOfWork(self.db) as uow:
                number = await uow.scripts.live_number()
                if number is None or number in (self.loaded, self._failed):
                    return False
                version = await uow.scripts.version(number)
            if version is None:
                return False
            if self.understanding is None:
                return False
            if version.body == self._held:  # version 1 of the scripts the app started with
                held = self.understanding.current
                matcher = await asyncio.to_thread(held.trained)  # trained here, not at a message
                remember(version.body, self.validator.region, matcher)
                self.understanding.replace(dataclasses.replace(held, version=source(number)))
                self.loaded = number
                return True
            try:
                knowledge = await asyncio.to_thread(
                    functools.partial(
                        self.validator.build,
                        version.body,
                        source(number),
                        published=True,
                        trained=Training.from_json(version.trained),
                    )
                )
            except ScriptsInvalid as exc:
                # Published versions were validated; a different configuration can still
                # refuse one (a sequence naming a script it lacks): keep what we hold.
                self._failed = number
                log.error("scripts_not_loaded", extra={"version": number, "problem": exc.problem})
                return False
            self.understanding.replace(knowledge)
            self.loaded, self._held = number, version.body
            return True

    def nudge(self) -> None:
        """Look for a new live version now (another process said it published one)."""
        self._nudged.set()

    async def watch(self) -> None:
        """Poll the live number for ever (the app's background task), and at once when
        nudged. The poll stays: a signal can be lost, and SQLite has none between processes."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self.interval)
            self._nudged.clear()
            try:
                await self.sync()
            except Exception as exc:
                if not (is_unavailable(exc) or is_conflict(exc)):
                    raise
                log.warning("scripts_poll_failed", extra={"error": type(exc).__name__})

    # --- versions ---------------------------------------------------------------------------

    async def versions(self, limit: int = 100) -> list[ScriptVersion]:
        async with UnitOfWork(self.db) as uow:
            return await uow.scripts.versions(limit)

    async def version(self, number: int) -> ScriptVersion:
        async with UnitOfWork(self.db) as uow:
            version = await uow.scripts.version(number)
        if version is None:
            raise NotFound(f"no script version {number}", code="no_version", number=str(number))
        return version

    async def live(self) -> ScriptVersion:
        async with UnitOfWork(self.db) as uow:
            version = await uow.scripts.live()
        if version is None:
            raise NotFound("no script version yet", code="no_version", number="1")
        return version

    async def publish(
        self,
        body: str,
        comment: str,
        who: Who,
        *,
        restores: int | None = None,
        from_draft: bool = False,
    ) -> ScriptVersion:
        """Validate `body` and make it the live version, here at once and elsewhere within
        `interval` seconds. `from_draft`: `body` is the shared draft, which is then gone (an
        import or a rollback leaves the draft alone).

        A new text (not a rollback) must keep its promises: a variant that says it will send
        something attaches a material that exists (`material_problems`). A rollback may return
        to a version from before materials: the bot skips its promises meanwhile.

        Raises:
            ScriptsInvalid: the version cannot go live (nothing changed).
        """
        comment = " ".join(comment.split())[:500]
        knowledge = await asyncio.to_thread(self.validator.build, body, "borrador")
        if restores is None:
            await self.check_materials(knowledge.catalogue)
        for _ in range(3):
            async with UnitOfWork(self.db) as uow:
                number = (await uow.scripts.live_number() or 0) + 1
                training = knowledge.matcher.training
                version = ScriptVersion(
                    number=number,
                    body=body,
                    comment=comment,
                    author_id=who.agent_id,
                    restores=restores,
                    created_at=utcnow(),
                    # The other processes reuse it: they load this version in half the time.
                    trained=training.to_json() if training is not None else None,
                )
                uow.scripts.add(version)
                if from_draft:
                    await uow.scripts.drop_draft()
                uow.audit.record(
                    PUBLISHED,
                    agent_id=who.agent_id,
                    subject=f"scripts:{number}",
                    detail={"comment": comment, "restores": restores},
                    address=who.address,
                    at=version.created_at,
                )
                try:
                    await uow.commit()
                except IntegrityError:
                    continue  # another admin published that number first: take the next
            if self.understanding is not None:
                async with self._lock:
                    live = dataclasses.replace(knowledge, version=source(number))
                    self.understanding.replace(live)
                    self.loaded, self._held = number, body
            log.info("scripts_published", extra={"version": number, "restores": restores})
            if self.on_published is not None:
                self.on_published()
            return version
        raise InvalidInput("publishing raced three times", code="busy")

    async def materials(self, catalogue: Catalogue) -> list[VariantProblem]:
        """The problems of the materials `catalogue`'s variants offer (refusals and warnings)."""
        library = await self.library() if self.library is not None else ()
        return material_problems(catalogue, library, self.promises)

    async def check_materials(self, catalogue: Catalogue) -> None:
        """Raises ScriptsInvalid when a variant promises what it cannot send."""
        refused = [p for p in await self.materials(catalogue) if p.refused]
        if refused:
            raise ScriptsInvalid("; ".join(str(p) for p in refused), materials=refused)

    async def rollback(self, number: int, who: Who) -> ScriptVersion:
        """Publish version `number`'s text again, as a new version that names it."""
        earlier = await self.version(number)
        return await self.publish(
            earlier.body, f"Vuelta a la versión {number}", who, restores=number
        )

    # --- the draft --------------------------------------------------------------------------

    async def draft(self) -> Draft:
        """The shared draft, or the live version's text when nobody has started one."""
        async with UnitOfWork(self.db) as uow:
            draft = await uow.scripts.draft()
            if draft is not None:
                return Draft(draft.body, draft.base, draft.updated_at, draft.updated_by, True)
            live = await uow.scripts.live()
        if live is None:
            return Draft(self.factory, 0, None, None, False)
        return Draft(live.body, live.number, None, None, False)

    async def save_draft(self, body: str, base: int, who: Who) -> None:
        async with UnitOfWork(self.db) as uow:
            await uow.scripts.save_draft(body, base, who.agent_id, utcnow())
            await uow.commit()

    async def discard_draft(self) -> None:
        async with UnitOfWork(self.db) as uow:
            await uow.scripts.drop_draft()
            await uow.commit()

    async def edit(self, change: Callable[[str], str], who: Who) -> Draft:
        """Apply `change` to the draft's text and keep the result as the draft.

        Raises:
            InvalidInput: the change cannot be made (its `code` says why).
        """
        draft = await self.draft()
        try:
            body = change(draft.body)
        except editing.EditError as exc:
            raise InvalidInput(str(exc), code=f"scripts_{exc.code}", **exc.details) from None
        await self.save_draft(body, draft.base, who)
        return Draft(body, draft.base, utcnow(), who.agent_id, True)

    def factory_sequences(self) -> dict[str, object]:
        """config.yaml's sequences as YAML data: what a version without `sequences:` runs."""
        return {name: sequence.dump() for name, sequence in self.validator.sequences.items()}

    def sequences_problem(self, body: str) -> ScriptsInvalid | None:
        """Why the sequences of `body` could not be published, checked without training (the
        rest of the version is checked at publishing), or None."""
        try:
            data = editing.read(body)
            scripts = data.get("scripts")
            names = {*(scripts if isinstance(scripts, dict) else ()), *data["intents"]}
            sequences_in(data.get("sequences"), {str(n) for n in names}, self.validator.sequences)
        except editing.EditError as exc:
            return ScriptsInvalid(str(exc))
        except SequencesInvalid as exc:
            return ScriptsInvalid(str(exc), exc.code, exc.details)
        return None

    def knowledge(self, body: str, name: str) -> Knowledge:
        """A scripts text trained (cached by text). Blocking. Raises ScriptsInvalid."""
        return self.validator.build(body, name)

    # --- what messages were understood as ---------------------------------------------------

    async def intent_counts(self, since: datetime) -> Mapping[str, int]:
        async with UnitOfWork(self.db) as uow:
            return await uow.scripts.intent_counts(since)

    async def not_understood(
        self, since: datetime, *, below: float, limit: int = 100
    ) -> list[Inbound]:
        """Recent inbound messages understood as `none` or with a confidence under `below`."""
        async with UnitOfWork(self.db) as uow:
            return await uow.scripts.inbound(since, limit=limit, not_understood_below=below)

    async def inbound(self, since: datetime, *, limit: int) -> list[Inbound]:
        async with UnitOfWork(self.db) as uow:
            return await uow.scripts.inbound(since, limit=limit)

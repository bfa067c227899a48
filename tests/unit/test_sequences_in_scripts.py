"""The follow-up sequences as part of the scripts: read, checked (naming the sequence and the
step), and edited one step at a time, the factory ones (config.yaml's) copied in on first edit."""

from __future__ import annotations

from typing import Any

import pytest

from bot.conversation.understanding import sequences_of
from bot.settings import SequencesInvalid, check_sequences, load_settings, read_sequences
from intents import editing, parse_catalogue
from intents.catalogue import DEFAULT_SCRIPTS

FACTORY: dict[str, Any] = {
    name: s.dump() for name, s in load_settings(environ={}).sequences.items()
}
SCRIPTS = DEFAULT_SCRIPTS.read_text(encoding="utf-8")
KNOWN = {"sequence.hot.1", "sequence.hot.2", "task.call_hot"}


def hot(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"hot": {"enter": {"tier": "hot"}, "steps": list(steps)}}


def test_the_factory_sequences_are_config_yamls_and_run_as_they_are() -> None:
    assert FACTORY["warm"] == {
        "enter": {"tier": "warm"},
        "steps": [
            {"after": "2h", "message": "sequence.warm.1"},
            {"after": "6h", "message": "sequence.warm.2"},
            {"after": "12h", "message": "sequence.warm.3"},
            {"after": "24h", "message": "sequence.warm.4"},
        ],
    }
    assert read_sequences(FACTORY) == load_settings(environ={}).sequences


@pytest.mark.parametrize(
    ("data", "code", "details", "message"),
    [
        (
            hot({"after": "2x", "message": "sequence.hot.1"}),
            "sequence_delay",
            {"sequence": "hot", "step": "1", "after": "2x"},
            "sequence 'hot' step 1: bad delay '2x'",
        ),
        (
            hot({"after": "1h", "message": "sequence.hot.1"}, {"after": 3}),
            "sequence_delay",
            {"sequence": "hot", "step": "2", "after": "3"},
            "sequence 'hot' step 2: bad delay 3",
        ),
        (
            hot({"after": "1h", "message": "sequence.hot.1", "task": "task.call_hot"}),
            "sequence_action",
            {"sequence": "hot", "step": "1"},
            "sequence 'hot' step 1: a step sends a `message` or creates a `task`",
        ),
        (hot(), "sequence_no_steps", {"sequence": "hot"}, "sequence 'hot' has no steps"),
        (
            {"hot": {"enter": {"tier": "tibio"}, "steps": [{"after": "1h", "message": "x"}]}},
            "sequence_enter",
            {"sequence": "hot"},
            "`enter` names one tier",
        ),
        (
            {"Caliente": FACTORY["hot"]},
            "sequence_name",
            {"sequence": "Caliente"},
            "sequence name 'Caliente'",
        ),
        ([], "sequence_shape", {}, "sequences: must be a mapping"),
    ],
)
def test_a_malformed_sequence_is_named_with_its_step(
    data: object, code: str, details: dict[str, str], message: str
) -> None:
    with pytest.raises(SequencesInvalid) as refused:
        read_sequences(data)
    assert (refused.value.code, refused.value.details) == (code, details)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("data", "code", "details"),
    [
        (
            hot({"after": "0h", "message": "sequence.hot.1"}, {"after": "1h", "message": "no.hay"}),
            "sequence_script",
            {"sequence": "hot", "step": "2", "script": "no.hay"},
        ),
        (
            hot({"after": "0h", "message": "sequence.hot.1"}, {"after": "1h", "task": "no.hay"}),
            "sequence_script",
            {"sequence": "hot", "step": "2", "script": "no.hay"},
        ),
        (
            hot(
                {"after": "2h", "message": "sequence.hot.1"},
                {"after": "90m", "message": "sequence.hot.2"},
            ),
            "sequence_order",
            {
                "sequence": "hot",
                "step": "2",
                "after": "90m",
                "previous": "1",
                "previous_after": "2h",
            },
        ),
        (
            {**hot({"after": "0h", "message": "sequence.hot.1"}), "otra": FACTORY["hot"]},
            "sequence_twice",
            {"sequence": "otra", "other": "hot", "start": "hot"},
        ),
    ],
)
def test_what_the_schema_cannot_see_is_checked(
    data: object, code: str, details: dict[str, str]
) -> None:
    with pytest.raises(SequencesInvalid) as refused:
        check_sequences(read_sequences(data), KNOWN)
    assert (refused.value.code, refused.value.details) == (code, details)


def test_equal_delays_and_the_factory_pass() -> None:
    same = hot(
        {"after": "1h", "message": "sequence.hot.1"}, {"after": "60m", "message": "sequence.hot.2"}
    )
    check_sequences(read_sequences(same), KNOWN)
    assert read_sequences({}) == {}  # a business may follow up by hand only
    catalogue = parse_catalogue(SCRIPTS, "es.yaml", overlaps=False)
    assert catalogue.sequences is None  # the packaged scripts run config.yaml's
    factory = read_sequences(FACTORY)
    assert sequences_of(catalogue, factory) is factory


def test_a_version_with_its_own_sequences_runs_them() -> None:
    own = editing.set_after(SCRIPTS, FACTORY, "hot", 1, "3h")
    catalogue = parse_catalogue(own, "versión 2", overlaps=False)
    sequences = sequences_of(catalogue, read_sequences(FACTORY))
    assert [s.after for s in sequences["hot"].steps] == ["0h", "3h", "4h", "6h"]
    assert sequences.keys() == FACTORY.keys()


def test_editing_a_step_copies_the_factory_sequences_in_first() -> None:
    views, own = editing.sequences(SCRIPTS, FACTORY)
    assert not own and [v.name for v in views] == ["hot", "warm", "cold", "post_sale"]
    first = views[0].steps[0]
    assert (first.after, first.kind, first.script) == ("0h", "message", "sequence.hot.1")
    assert first.variants[0].startswith("{nombre}, me quedé pendiente")
    assert views[3].stage == "purchase" and views[3].steps[0].kind == "task"

    edited = editing.set_after(SCRIPTS, FACTORY, "warm", 0, " 90 M ")
    views, own = editing.sequences(edited, FACTORY)
    assert own and views[1].steps[0].after == "90m"
    assert editing.read(edited)["sequences"]["hot"] == FACTORY["hot"]  # the others as they were
    assert FACTORY["warm"]["steps"][0]["after"] == "2h"  # the factory data is not changed

    added = editing.add_step(edited, FACTORY, "warm", "2d", "¿Seguimos, {nombre}?")
    steps = editing.read(added)["sequences"]["warm"]["steps"]
    assert steps[-1] == {"after": "2d", "message": "sequence.warm.5"}
    assert editing.read(added)["scripts"]["sequence.warm.5"] == ["¿Seguimos, {nombre}?"]
    removed = editing.remove_step(added, FACTORY, "warm", 4)
    assert len(editing.read(removed)["sequences"]["warm"]["steps"]) == 4

    text = editing.set_text(SCRIPTS, "sequence.hot.1", 1, "Hola otra vez, {nombre}.")
    assert editing.read(text)["scripts"]["sequence.hot.1"][1] == "Hola otra vez, {nombre}."
    assert "sequences" not in editing.read(text)  # a text is no sequence edit


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda t: editing.set_after(t, FACTORY, "warm", 0, "mañana"), "after"),
        (lambda t: editing.set_after(t, FACTORY, "tibia", 0, "1h"), "no_sequence"),
        (lambda t: editing.set_after(t, FACTORY, "warm", 9, "1h"), "no_step"),
        (lambda t: editing.add_step(t, FACTORY, "warm", "1d", "  "), "empty_reply"),
        (lambda t: editing.set_text(t, "sequence.hot.1", 5, "x"), "no_item"),
    ],
)
def test_edits_that_cannot_be_made(change: Any, code: str) -> None:
    with pytest.raises(editing.EditError) as refused:
        change(SCRIPTS)
    assert refused.value.code == code


def test_the_last_step_stays() -> None:
    one = editing.write(
        {**editing.read(SCRIPTS), "sequences": hot({"after": "0h", "message": "sequence.hot.1"})}
    )
    with pytest.raises(editing.EditError) as refused:
        editing.remove_step(one, FACTORY, "hot", 0)
    assert refused.value.code == "last_step"


def test_exporting_appends_the_sequences_run() -> None:
    exported = editing.with_sequences(SCRIPTS, FACTORY)
    assert exported.startswith(SCRIPTS.rstrip("\n"))  # comments and all
    assert editing.read(exported)["sequences"] == FACTORY
    assert editing.with_sequences(exported, {}) == exported

"""The conversation rules, without I/O: (conversation, message, NLU, lead) -> effects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.dialogue import Dialogue
from bot.core.effects import AskWhich, EnqueueHandoff, OptOut, Remember, Reply, Rescore
from bot.core.model import ConversationState
from bot.core.policy import ConversationView, InboundView, LeadView, Rules, decide
from intents.model import NluResult

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
RULES = Rules(miss_limit=2, points={"buy.intent": 10, "objection.not_interested": -8})
TEXT = InboundView(has_text=True)


def idle(misses: int = 0) -> ConversationView:
    return ConversationView(ConversationState.BOT, Dialogue(misses=misses))


def lead(**changes: object) -> LeadView:
    values: dict[str, object] = {"id": 1, "name": "Ana", "score": 30, "tier": "warm"}
    values.update(changes)
    return LeadView(**values)  # type: ignore[arg-type]


def nlu(intent: str, confidence: float = 0.9, **extra: object) -> NluResult:
    return NluResult(intent, confidence, **extra)  # type: ignore[arg-type]


def test_greeting_gets_the_greeting_script() -> None:
    assert decide(idle(), TEXT, nlu("greeting"), lead(), NOW, RULES) == [
        Remember(Dialogue()),
        Reply("greeting"),
    ]


def test_optout_confirms_once_and_stops() -> None:
    assert decide(idle(), TEXT, nlu("optout"), lead(), NOW, RULES) == [
        OptOut(),
        Reply("optout.confirm"),
    ]


def test_handoff_request_queues_and_tells_the_lead() -> None:
    effects = decide(idle(), TEXT, nlu("handoff.human"), lead(), NOW, RULES)
    assert EnqueueHandoff("handoff.human") in effects
    assert effects[-1] == Reply("handoff.waiting")


def test_buying_hands_off_to_close_the_sale_and_scores() -> None:
    effects = decide(idle(), TEXT, nlu("buy.intent"), lead(), NOW, RULES)
    assert effects[0] == Rescore(10, "buy.intent")
    assert Reply("buy.intent") in effects
    assert effects[-1] == EnqueueHandoff("buy.intent")


def test_objection_answers_with_its_script_and_rescoring() -> None:
    effects = decide(idle(), TEXT, nlu("objection.not_interested"), lead(), NOW, RULES)
    assert effects == [
        Rescore(-8, "objection.not_interested"),
        Remember(Dialogue()),
        Reply("objection.not_interested"),
    ]


def test_first_miss_asks_to_rephrase_and_counts() -> None:
    assert decide(idle(), TEXT, nlu("none", 0.1), lead(), NOW, RULES) == [
        Remember(Dialogue(misses=1)),
        Reply("none"),
    ]


def test_repeated_misses_hand_off() -> None:
    effects = decide(idle(misses=1), TEXT, nlu("none", 0.1), lead(), NOW, RULES)
    assert effects == [
        Remember(Dialogue()),
        EnqueueHandoff("not_understood"),
        Reply("handoff.not_understood"),
    ]


def test_understanding_resets_the_miss_count() -> None:
    effects = decide(idle(misses=1), TEXT, nlu("info.pricing"), lead(), NOW, RULES)
    assert Remember(Dialogue()) in effects


def test_ambiguous_message_asks_which_one() -> None:
    result = nlu(
        "objection.price",
        0.5,
        ambiguous=True,
        candidates=(("objection.price", 0.5), ("objection.budget", 0.48)),
    )
    effects = decide(idle(), TEXT, result, lead(), NOW, RULES)
    assert effects[-1] == AskWhich(("objection.price", "objection.budget"))


@pytest.mark.parametrize("state", [ConversationState.WAITING, ConversationState.AGENT])
def test_bot_is_silent_while_people_own_the_conversation(state: ConversationState) -> None:
    assert decide(ConversationView(state), TEXT, nlu("greeting"), lead(), NOW, RULES) == []


def test_opted_out_lead_gets_nothing() -> None:
    assert decide(idle(), TEXT, nlu("greeting"), lead(opted_out=True), NOW, RULES) == []


def test_media_without_text_is_acknowledged() -> None:
    media = InboundView(has_text=False, has_media=True)
    assert decide(idle(), media, nlu("none", 0.0), lead(), NOW, RULES) == [Reply("media.received")]


def test_nothing_at_all_gets_no_reply() -> None:
    empty = InboundView(has_text=False)
    assert decide(idle(), empty, nlu("none", 0.0), lead(), NOW, RULES) == []


def test_an_email_typed_with_a_request_answers_it_and_says_the_email_was_saved() -> None:
    typed = InboundView(has_text=True, email_saved="juan@gmail.com")
    effects = decide(idle(), typed, nlu("objection.send_info"), lead(), NOW, RULES)
    replies = [e for e in effects if isinstance(e, Reply)]
    assert replies == [
        Reply("contact.email_saved", {"correo": "juan@gmail.com"}),
        Reply("objection.send_info"),
    ]


def test_contact_details_alone_are_acknowledged_not_misunderstood() -> None:
    typed = InboundView(has_text=True, phones_saved=("+52 55 1234 5678",))
    effects = decide(idle(misses=1), typed, nlu("none", 0.2), lead(), NOW, RULES)
    assert effects == [
        Remember(Dialogue()),
        Reply("contact.phone_saved", {"telefono": "+52 55 1234 5678"}),
    ]


def test_a_name_alone_is_greeted_by_it() -> None:
    named = InboundView(has_text=True, name_saved=True)
    effects = decide(idle(), named, nlu("none", 0.2), lead(), NOW, RULES)
    assert effects == [Remember(Dialogue()), Reply("contact.name_saved")]


CUSTOMER_RULES = Rules(points={"buy.intent": 10}, won_stages=frozenset({"purchase"}))


def test_a_customer_asking_to_buy_gets_the_post_sale_path_not_a_payment_request() -> None:
    customer = lead(stage="purchase")
    effects = decide(idle(), TEXT, nlu("buy.intent"), customer, NOW, CUSTOMER_RULES)
    assert Reply("buy.intent") not in effects
    assert effects[-2:] == [Reply("post_sale.next"), EnqueueHandoff("post_sale")]


def test_saying_one_already_bought_is_the_post_sale_path_whatever_the_stage() -> None:
    said = nlu("buy.intent", bought=True)
    effects = decide(idle(), TEXT, said, lead(stage="interest"), NOW, CUSTOMER_RULES)
    assert effects[-2:] == [Reply("post_sale.next"), EnqueueHandoff("post_sale")]
    # Not a customer and not saying so: buying is buying.
    effects = decide(idle(), TEXT, nlu("buy.intent"), lead(stage="interest"), NOW, CUSTOMER_RULES)
    assert effects[-2:] == [Reply("buy.intent"), EnqueueHandoff("buy.intent")]


def test_the_won_stages_are_data() -> None:
    real_estate = Rules(won_stages=frozenset({"escriturado", "entregado"}))
    buying = nlu("buy.intent")
    assert Reply("post_sale.next") in decide(
        idle(), TEXT, buying, lead(stage="escriturado"), NOW, real_estate
    )
    assert Reply("post_sale.next") not in decide(
        idle(), TEXT, buying, lead(stage="purchase"), NOW, real_estate
    )


def test_an_ambiguous_message_remembers_the_two_readings() -> None:
    result = nlu(
        "info.pricing",
        0.5,
        ambiguous=True,
        candidates=(("info.pricing", 0.5), ("info.payment_options", 0.45)),
    )
    effects = decide(idle(), TEXT, result, lead(), NOW, RULES)
    assert Remember(Dialogue(clarifying=("info.pricing", "info.payment_options"))) in effects

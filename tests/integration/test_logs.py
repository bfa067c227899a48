"""What reaches the logs of a whole conversation: no phone number, e-mail or card number, from
our own code or from a library, at any level."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.exc import IntegrityError

from bot import logs
from bot.web.keys import DATABASE, DISPATCHER
from storage.models import LeadPhone
from storage.uow import UnitOfWork
from tests.builders import send_due
from tests.conftest import free_port
from tests.fakes.twilio_api import FakeTwilioServer

PHONE = "+5215512345678"
ANA = f"whatsapp:{PHONE}"
SECRETS = ("5512345678", "55 8765 4321", "ana.martinez@gmail.com", "4111 1111 1111 1111")
DIGITS = re.compile(r"\d{8,}")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The service's own log configuration (JSON, DEBUG), writing to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    logs.configure("DEBUG", json_format=True, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


async def test_a_conversation_leaves_no_personal_data_in_the_logs(
    service: Any, tw: FakeTwilioServer, captured: io.StringIO
) -> None:
    port = free_port()
    client: TestClient[Any, Any] = await service(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        twilio={
            "account_sid": tw.account_sid,
            "auth_token": tw.auth_token,
            "api_base_url": tw.base_url,
        },
        whatsapp={"from": "whatsapp:+14155238886"},
    )
    await client.app[DISPATCHER].stop(timeout=1)
    url = f"http://127.0.0.1:{port}/webhooks/whatsapp"
    for text in (
        "hola, soy Ana",
        "mi correo es ana.martinez@gmail.com y mi otro cel 55 8765 4321",
        "¿puedo pagar con la tarjeta 4111 1111 1111 1111?",
        "quiero hablar con un asesor",
    ):
        form, headers = tw.sign(url, tw.inbound_whatsapp_params(ANA, text, profile_name="Ana"))
        assert (await client.post("/webhooks/whatsapp", data=form, headers=headers)).status == 200
    await send_due(client)

    # A library logging a request line, and a database error whose text carries the row.
    logging.getLogger("twilio.http_client").warning("POST To: %s Body: %s", ANA, SECRETS[2])
    db = client.app[DATABASE]
    try:
        async with UnitOfWork(db) as uow:
            uow.session.add(LeadPhone(lead_id=1, e164="+525512345678"))  # as stored
            await uow.session.flush()
    except IntegrityError:
        logging.getLogger("bot.test").exception("insert_failed", extra={"to": ANA})
    else:
        pytest.fail("the number is already the lead's: the insert must fail")

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert any(line["event"] == "message_text" for line in lines)  # DEBUG was on
    assert any("exc" in line for line in lines)
    text = captured.getvalue()
    for secret in (*SECRETS, PHONE, PHONE.removeprefix("+")):
        assert secret not in text
    assert "[phone]" in text and "[e-mail]" in text and "[card]" in text

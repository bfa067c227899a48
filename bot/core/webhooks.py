"""Outbound webhooks, pure: the events, and the signature (like Stripe's): the header
`Seguibot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Seguibot-Signature"
EVENTS = (
    "lead.created",
    "lead.stage_changed",
    "appointment.booked",
    "handoff.requested",
    "deal.won",
    "deal.lost",
)
TOLERANCE = 300  # seconds a receiver should accept between the timestamp and its clock


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = TOLERANCE) -> bool:
    """What a receiver does (the README's recipe): split the header, recompute, compare in
    constant time, and refuse an old timestamp (a replay)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(now - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))

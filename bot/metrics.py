"""Prometheus metrics, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INBOUND = Counter(
    "seguibot_inbound_messages_total", "Messages received from leads", ["channel", "result"]
)
REPLIES = Counter("seguibot_replies_total", "Replies the bot decided to send", ["channel"])
OUTBOX_SENT = Counter("seguibot_outbox_sent_total", "Messages the channel accepted", ["channel"])
OUTBOX_FAILED = Counter(
    "seguibot_outbox_failed_total", "Messages given up on or blocked", ["channel", "reason"]
)
OUTBOX_RETRIED = Counter(
    "seguibot_outbox_retried_total", "Send attempts that will be retried", ["channel"]
)
OUTBOX_PENDING = Gauge("seguibot_outbox_pending", "Outbox rows waiting to be sent")
HANDOFFS = Counter("seguibot_handoffs_total", "Conversations handed to people", ["reason"])
ENGINE_LATENCY = Histogram(
    "seguibot_engine_seconds",
    "Time to handle one inbound event, transaction included",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ACTIONS = Counter("seguibot_actions_total", "Scheduled actions handled", ["kind", "result"])
ACTION_LATENESS = Histogram(
    "seguibot_action_lateness_seconds",
    "How long after its due time a scheduled action fired",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)

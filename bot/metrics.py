"""Prometheus metrics, served at GET /metrics: one registry per application.

Each app owns its `Metrics` (tests and benchmarks that run several apps in one process no
longer share counters); the services that count receive it from the app factory.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.inbound = Counter(
            "seguibot_inbound_messages_total",
            "Messages received from leads",
            ["channel", "result"],
            registry=registry,
        )
        self.replies = Counter(
            "seguibot_replies_total",
            "Replies the bot decided to send",
            ["channel"],
            registry=registry,
        )
        self.outbox_sent = Counter(
            "seguibot_outbox_sent_total",
            "Messages the channel accepted",
            ["channel"],
            registry=registry,
        )
        self.outbox_failed = Counter(
            "seguibot_outbox_failed_total",
            "Messages given up on or blocked",
            ["channel", "reason"],
            registry=registry,
        )
        self.outbox_retried = Counter(
            "seguibot_outbox_retried_total",
            "Send attempts that will be retried",
            ["channel"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "seguibot_outbox_pending", "Outbox rows waiting to be sent", registry=registry
        )
        self.handoffs = Counter(
            "seguibot_handoffs_total",
            "Conversations handed to people",
            ["reason"],
            registry=registry,
        )
        self.engine_latency = Histogram(
            "seguibot_engine_seconds",
            "Time to handle one inbound event, transaction included",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.actions = Counter(
            "seguibot_actions_total",
            "Scheduled actions handled",
            ["kind", "result"],
            registry=registry,
        )
        self.action_lateness = Histogram(
            "seguibot_action_lateness_seconds",
            "How long after its due time a scheduled action fired",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=registry,
        )

"""Prometheus metrics, served at GET /metrics: one registry per application.

Each app owns its `Metrics` (tests and benchmarks that run several apps in one process no
longer share counters); the services that count receive it from the app factory.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Counters the services increment, and gauges `bot.web.ops` reads from the database."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.inbound = Counter(
            "seguibot_inbound_messages_total",
            "Messages received from leads",
            ["channel", "result"],
            registry=registry,
        )
        self.overloaded = Counter(
            "seguibot_overloaded_total",
            "Inbound events that waited their turn too long (answered 503, or stored for later)",
            ["channel"],
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
            "Sends the channel refused or that were given up on, by error code "
            "(the channel's: 403, 21610, ...; gave_up after outbox.max_attempts)",
            ["channel", "code"],
            registry=registry,
        )
        self.outbox_blocked = Counter(
            "seguibot_outbox_blocked_total",
            "Messages held back on purpose (opted_out, lead_replied, unreachable, "
            "outside_24h_window, uncertain, ...)",
            ["channel", "reason"],
            registry=registry,
        )
        self.outbox_retried = Counter(
            "seguibot_outbox_retried_total",
            "Send attempts that will be retried",
            ["channel"],
            registry=registry,
        )
        # Read from the database at each scrape (bot/web/ops.py): true across processes and
        # restarts, which counters in one process are not.
        self.outbox_pending = Gauge(
            "seguibot_outbox_pending", "Outbox rows waiting to be sent", registry=registry
        )
        self.outbox_oldest_pending = Gauge(
            "seguibot_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row not sent yet (0 when none)",
            registry=registry,
        )
        self.queue_length = Gauge(
            "seguibot_handoff_queue_length",
            "Conversations waiting for an agent",
            registry=registry,
        )
        self.queue_oldest = Gauge(
            "seguibot_handoff_oldest_wait_seconds",
            "How long the longest-waiting conversation has waited for an agent (0 when none)",
            registry=registry,
        )
        self.actions_due = Gauge(
            "seguibot_actions_due",
            "Scheduled actions due and not fired yet",
            registry=registry,
        )
        self.actions_oldest_due = Gauge(
            "seguibot_actions_oldest_due_seconds",
            "How late the most overdue scheduled action not fired yet is (0 when none)",
            registry=registry,
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

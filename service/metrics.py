"""Prometheus metrics, one registry per app so that several apps can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("seatcast_connections", "Open websocket connections", registry=r)
        self.subscriptions = Gauge(
            "seatcast_subscriptions", "Subscriptions by channel kind", ["kind"], registry=r
        )
        self.events_applied = Counter(
            "seatcast_events_applied", "Stream entries applied to the tally", registry=r
        )
        self.events_rejected = Counter(
            "seatcast_events_rejected", "Stream entries rejected as invalid", registry=r
        )
        self.events_stale = Counter(
            "seatcast_events_stale", "Stream entries ignored as stale revisions", registry=r
        )
        self.messages_sent = Counter(
            "seatcast_messages_sent", "Messages queued to subscribers", registry=r
        )
        self.fanout_latency = Histogram(
            "seatcast_fanout_latency_seconds",
            "From the stream entry's time to its messages being handed to every subscriber",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.stream_lag = Gauge(
            "seatcast_stream_lag_seconds",
            "Time between the newest entry on the stream and the last one applied",
            registry=r,
        )
        self.slow_closes = Counter(
            "seatcast_slow_client_closes", "Clients closed with 1013 for falling behind", registry=r
        )
        self.redis_connected = Gauge(
            "seatcast_redis_connected", "1 while the stream reader is connected", registry=r
        )
        self.redis_errors = Counter(
            "seatcast_redis_errors",
            "Redis errors of the stream reader, each followed by a reconnect",
            registry=r,
        )
        self.ready = Gauge(
            "seatcast_ready",
            "1 while the reader is connected and caught up with the stream (as /readyz)",
            registry=r,
        )
        self.events_published = Counter(
            "seatcast_events_published",
            "Events added to the stream by POST /api/events",
            registry=r,
        )
        self.feed_check_disagreements = Counter(
            "seatcast_feed_check_disagreements",
            "state_of_parties events whose totals disagree with ours over the same seats",
            registry=r,
        )
        self.feed_check_agrees = Gauge(
            "seatcast_feed_check_agrees",
            "1 if the latest state_of_parties agrees with our totals, 0 if not, NaN before one",
            registry=r,
        )
        self.feed_check_agrees.set(float("nan"))  # an alert on == 0 must not fire before one
        self.http_requests = Counter(
            "seatcast_http_requests",
            "HTTP requests answered, by route template and status (streams not counted)",
            ["route", "status"],
            registry=r,
        )
        self.long_poll_waiters = Gauge(
            "seatcast_long_poll_waiters", "?wait= requests held now", registry=r
        )
        self.sse_streams = Gauge("seatcast_sse_streams", "Open /sse streams", registry=r)
        self.webhook_sent = Counter(
            "seatcast_webhook_sent", "Webhook requests answered 2xx", ["target"], registry=r
        )
        self.webhook_failed = Counter(
            "seatcast_webhook_failed",
            "Webhook requests that failed (error, timeout or non-2xx); each is retried",
            ["target"],
            registry=r,
        )
        self.webhook_coalesced = Counter(
            "seatcast_webhook_coalesced",
            "Changes folded into a later webhook request instead of one of their own",
            ["target"],
            registry=r,
        )

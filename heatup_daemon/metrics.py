"""Every Prometheus metric heatup exports, defined in one place.

Names follow the Prometheus conventions (``heatup_`` prefix, ``_total`` counters, ``_seconds``
units). No label carries a session id or a channel name: label values come from small fixed
sets (statuses, triggers, action kinds and outcomes, operations), so the series count does
not grow with the number of sessions.
"""

from __future__ import annotations

import platform
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from heatup_daemon import __version__

REGISTRY: Final = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_FAST: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SLOW: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200)

BUILD: Final = Info("heatup_build", "heatup's version", registry=REGISTRY)
BUILD.info({"version": __version__, "python": platform.python_version()})

RUNS: Final = Counter(
    "heatup_runs",
    "Runs that ended, by status and trigger",
    ["status", "trigger"],
    registry=REGISTRY,
)
RUN_DURATION: Final = Histogram(
    "heatup_run_duration_seconds",
    "Wall time of ended runs",
    ["status"],
    buckets=_SLOW,
    registry=REGISTRY,
)
RUNS_IN_FLIGHT: Final = Gauge(
    "heatup_runs_in_flight", "Runs in flight in this process", registry=REGISTRY
)
ACTIONS: Final = Counter(
    "heatup_actions",
    "Executed actions, by kind and outcome",
    ["kind", "outcome"],
    registry=REGISTRY,
)
ACTION_DURATION: Final = Histogram(
    "heatup_action_duration_seconds",
    "Wall time of actions, stays included",
    ["kind"],
    buckets=_SLOW,
    registry=REGISTRY,
)
GATEWAY_REQUESTS: Final = Counter(
    "heatup_gateway_requests",
    "HTTP attempts to the gateway, by operation and outcome",
    ["operation", "outcome"],
    registry=REGISTRY,
)
GATEWAY_LATENCY: Final = Histogram(
    "heatup_gateway_request_duration_seconds",
    "Latency of gateway HTTP attempts",
    ["operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
GATEWAY_AUTH_FAILING: Final = Gauge(
    "heatup_gateway_auth_failing",
    "1 while the gateway refuses heatup's token",
    registry=REGISTRY,
)
FLOOD_WAIT_SECONDS: Final = Counter(
    "heatup_flood_wait_seconds", "Seconds of flood wait Telegram imposed", registry=REGISTRY
)
LLM_REQUESTS: Final = Counter(
    "heatup_llm_requests", "LLM planning calls, by outcome", ["outcome"], registry=REGISTRY
)
LLM_LATENCY: Final = Histogram(
    "heatup_llm_request_duration_seconds",
    "Latency of LLM planning calls",
    buckets=_FAST,
    registry=REGISTRY,
)
LLM_TOKENS: Final = Counter(
    "heatup_llm_tokens", "LLM tokens used, by kind", ["kind"], registry=REGISTRY
)
PLANS: Final = Counter("heatup_plans", "Plans made, by source", ["source"], registry=REGISTRY)
DISPATCH_LAG: Final = Histogram(
    "heatup_dispatch_lag_seconds",
    "Start of a scheduled run minus its due time",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
SESSIONS: Final = Gauge(
    "heatup_sessions",
    "Registered sessions, by state (active, needs_attention, disabled, invalid)",
    ["state"],
    registry=REGISTRY,
)
INVALID_ROWS: Final = Gauge(
    "heatup_invalid_rows", "Admin rows heatup cannot use, by table", ["table"], registry=REGISTRY
)
READY: Final = Gauge("heatup_ready", "1 when the daemon is ready (see /readyz)", registry=REGISTRY)

# Series of known label values exist from the first scrape (at 0), so rates and alerts work
# before the first event.
LLM_OUTCOMES: Final = (
    "ok",
    "timeout",
    "rate_limited",
    "http_error",
    "connection_error",
    "unusable_answer",
    "error",
)
for _source in ("llm", "fallback"):
    PLANS.labels(_source)
for _kind in ("prompt", "completion"):
    LLM_TOKENS.labels(_kind)
for _outcome in LLM_OUTCOMES:
    LLM_REQUESTS.labels(_outcome)


def observe_gateway(operation: str, outcome: str, seconds: float) -> None:
    """The gateway client's per-attempt observer."""
    GATEWAY_REQUESTS.labels(operation, outcome).inc()
    GATEWAY_LATENCY.labels(operation).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every heatup metric and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

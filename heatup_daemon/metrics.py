"""Every Prometheus metric heatup exports, defined in one place, reached through one seam.

Parts never touch a series: they report events to a ``Metrics`` object they were given (the
runner and executor as a ``RunObserver``, the gateway client, the planner and the scheduler
through the methods below). Gauges that need the database are set by the scheduler's
refresh job, never computed by a scrape or a probe.

Names follow the Prometheus conventions (``heatup_`` prefix, ``_total`` counters, ``_seconds``
units). No label carries a session id or a channel name: label values come from small fixed
sets (``enums``), so the series count does not grow with the number of sessions.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import datetime
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
from heatup_daemon.enums import (
    ActionKind,
    Job,
    JoinRefusal,
    LLMOutcome,
    Outcome,
    PlanSource,
    RunStatus,
    SkipCause,
    Trigger,
)
from heatup_daemon.planner.model import Plan
from heatup_daemon.ramp import Ramp
from heatup_daemon.records import ActionRecord, Run, SessionCounts
from heatup_daemon.run.events import Listener, RunEnd

_FAST: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SLOW: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200)


class Metrics(Listener):
    """heatup's metrics in a registry of their own (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None, ramp: Ramp | None = None) -> None:
        self._ramp_labels = (ramp or Ramp()).labels
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Info("heatup_build", "heatup's version", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self._define_runs(registry)
        self._define_planning(registry)
        self._define_scheduling(registry)
        self._define_registry(registry)
        self._precreate()

    def _define_runs(self, registry: CollectorRegistry) -> None:
        """The metrics of runs, their actions and the gateway's answers."""
        self.runs = Counter(
            "heatup_runs",
            "Runs that ended, by status and trigger",
            ["status", "trigger"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "heatup_run_duration_seconds",
            "Wall time of ended runs",
            ["status"],
            buckets=_SLOW,
            registry=registry,
        )
        self.runs_in_flight = Gauge(
            "heatup_runs_in_flight", "Runs in flight in this process", registry=registry
        )
        self.actions = Counter(
            "heatup_actions",
            "Executed actions, by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.action_duration = Histogram(
            "heatup_action_duration_seconds",
            "Wall time of actions, stays included",
            ["kind"],
            buckets=_SLOW,
            registry=registry,
        )
        self.gateway_requests = Counter(
            "heatup_gateway_requests",
            "HTTP attempts to the gateway, by operation and outcome",
            ["operation", "outcome"],
            registry=registry,
        )
        self.gateway_latency = Histogram(
            "heatup_gateway_request_duration_seconds",
            "Latency of gateway HTTP attempts",
            ["operation"],
            buckets=_FAST,
            registry=registry,
        )
        self.gateway_auth_failing = Gauge(
            "heatup_gateway_auth_failing",
            "1 while the gateway refuses heatup's token",
            registry=registry,
        )
        self.flood_wait_seconds = Counter(
            "heatup_flood_wait_seconds",
            "Seconds of flood wait Telegram imposed",
            registry=registry,
        )

    def _define_planning(self, registry: CollectorRegistry) -> None:
        """The metrics of plans, the LLM and the joins a plan could not make."""
        self.llm_requests = Counter(
            "heatup_llm_requests",
            "LLM planning calls, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.llm_latency = Histogram(
            "heatup_llm_request_duration_seconds",
            "Latency of LLM planning calls",
            buckets=_FAST,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "heatup_llm_tokens", "LLM tokens used, by kind", ["kind"], registry=registry
        )
        self.plans = Counter("heatup_plans", "Plans made, by source", ["source"], registry=registry)
        self.joins_dropped = Counter(
            "heatup_joins_dropped",
            "Planned joins dropped to look after accounts, by reason",
            ["reason"],
            registry=registry,
        )

    def _define_scheduling(self, registry: CollectorRegistry) -> None:
        """The metrics of the schedule: skipped slots, dispatch, the jobs, retention."""
        self.skipped_slots = Counter(
            "heatup_slots_skipped",
            "Scheduled slots recorded as skipped, by cause (late, in_flight, cooldown, coalesced)",
            ["cause"],
            registry=registry,
        )
        self.decisions_refused_total = Counter(
            "heatup_slot_decisions_refused",
            "Sessions whose next slot the database refused: the row is flagged, the others "
            "go on, and the next reconcile decides it again",
            registry=registry,
        )
        self.dispatch_lag = Histogram(
            "heatup_dispatch_lag_seconds",
            "Start of a scheduled run minus its due time",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.dispatch_pass = Histogram(
            "heatup_dispatch_pass_seconds",
            "Wall time of one dispatch pass (claims and starts)",
            buckets=_FAST,
            registry=registry,
        )
        self.dispatch_overruns = Counter(
            "heatup_dispatch_overruns",
            "Dispatch passes that took longer than scheduler.dispatch_interval_s",
            registry=registry,
        )
        self.dispatch_full = Counter(
            "heatup_dispatch_full",
            "Times dispatch found runs due with scheduler.max_concurrent_runs runs already in "
            "flight: the due runs wait for a free place (raise max_concurrent_runs)",
            registry=registry,
        )
        self.job_failures = Counter(
            "heatup_job_failures",
            "Failed passes of the scheduler's jobs, by job",
            ["job"],
            registry=registry,
        )
        self.job_overruns = Counter(
            "heatup_job_overruns",
            "Passes of a housekeeping job not started because the last one still ran",
            ["job"],
            registry=registry,
        )
        self.history_deleted = Counter(
            "heatup_history_deleted_runs",
            "Runs (with their actions) deleted by history retention",
            registry=registry,
        )

    def _define_registry(self, registry: CollectorRegistry) -> None:
        """The metrics of the registry, the node and its database."""
        self.sessions = Gauge(
            "heatup_sessions",
            "Registered sessions, by standing (active, needs_attention, disabled, invalid)",
            ["standing"],
            registry=registry,
        )
        self.ramp_stages = Gauge(
            "heatup_sessions_by_ramp_stage",
            "Active sessions by the age stage of their join ramp",
            ["stage"],
            registry=registry,
        )
        self.invalid_rows = Gauge(
            "heatup_invalid_rows",
            "Admin rows heatup cannot use, by table",
            ["table"],
            registry=registry,
        )
        self.clock_offset_seconds = Gauge(
            "heatup_clock_offset_seconds",
            "How far this host's clock is ahead of the database's (heatup keeps to the "
            "database's on PostgreSQL; 0 on SQLite)",
            registry=registry,
        )
        self.ready = Gauge(
            "heatup_ready", "1 when the daemon is ready (see /readyz)", registry=registry
        )
        self.database_up = Gauge(
            "heatup_database_up", "1 while the database answers heatup", registry=registry
        )

    def _precreate(self) -> None:
        """Series of known label values exist from the first scrape (at 0), so rates and
        alerts work before the first event."""
        final = [status for status in RunStatus if status is not RunStatus.RUNNING]
        labelled: tuple[tuple[Counter | Gauge, list[tuple[str, ...]]], ...] = (
            (self.plans, [(source,) for source in PlanSource]),
            (self.llm_tokens, [("prompt",), ("completion",)]),
            (self.llm_requests, [(outcome,) for outcome in LLMOutcome]),
            (self.runs, [(status, trigger) for status in final for trigger in Trigger]),
            (self.actions, [(kind, result) for kind in ActionKind for result in Outcome]),
            (self.job_failures, [(job,) for job in Job]),
            (self.job_overruns, [(job,) for job in Job]),
            (self.joins_dropped, [(r,) for r in JoinRefusal if r.looks_after_accounts]),
            (self.ramp_stages, [(stage,) for stage in self._ramp_labels]),
            (self.skipped_slots, [(cause,) for cause in SkipCause]),
        )
        for series, label_sets in labelled:
            for labels in label_sets:
                series.labels(*labels)
        self.database_up.set(1)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every heatup metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- a run's events (``events.RunObserver``) ------------------------------------------

    def run_started(self, run: Run, plan: Plan) -> None:
        self.plans.labels(plan.source).inc()
        for reason, count in plan.joins_dropped:
            self.joins_dropped.labels(reason).inc(count)

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        self.actions.labels(record.kind, record.outcome).inc()
        self.action_duration.labels(record.kind).observe(record.actual_duration_s or 0.0)

    def run_ended(self, run: Run, end: RunEnd) -> None:
        self.runs.labels(end.status, run.trigger).inc()
        self.run_duration.labels(end.status).observe(end.seconds)

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None:
        self.flood_wait_seconds.inc(wait_s)

    # A session needing attention shows in the sessions gauge at the next refresh; a flagged
    # channel in the console and the channel list: neither is counted here.

    # --- the gateway client, the planner, the scheduler --------------------------------

    def gateway_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.gateway_requests.labels(operation, outcome).inc()
        self.gateway_latency.labels(operation).observe(seconds)

    def llm_request(
        self, outcome: LLMOutcome, seconds: float, prompt: int, completion: int
    ) -> None:
        self.llm_requests.labels(outcome).inc()
        self.llm_latency.observe(seconds)
        self.llm_tokens.labels("prompt").inc(prompt)
        self.llm_tokens.labels("completion").inc(completion)

    def slots_skipped(self, cause: SkipCause, count: int) -> None:
        self.runs.labels(RunStatus.SKIPPED, Trigger.SCHEDULE).inc(count)
        self.skipped_slots.labels(cause).inc(count)

    def decisions_refused(self, count: int) -> None:
        self.decisions_refused_total.inc(count)

    def run_dispatched(self, lag_s: float) -> None:
        self.dispatch_lag.observe(max(lag_s, 0.0))

    def dispatch_finished(self, seconds: float, overran: bool) -> None:
        self.dispatch_pass.observe(seconds)
        if overran:
            self.dispatch_overruns.inc()

    def dispatch_waited_for_room(self) -> None:
        self.dispatch_full.inc()

    def job_failed(self, job: Job) -> None:
        self.job_failures.labels(job).inc()

    def job_overran(self, job: Job) -> None:
        self.job_overruns.labels(job).inc()

    def history_trimmed(self, runs: int) -> None:
        self.history_deleted.inc(runs)

    def set_gauges(
        self, counts: SessionCounts, ramp_stages: Mapping[str, int], in_flight: int
    ) -> None:
        for standing, count in counts.by_standing().items():
            self.sessions.labels(standing).set(count)
        self.invalid_rows.labels("sessions").set(counts.invalid)
        self.invalid_rows.labels("channels").set(counts.invalid_channels)
        for stage in self._ramp_labels:
            self.ramp_stages.labels(stage).set(ramp_stages.get(stage, 0))
        self.runs_in_flight.set(in_flight)

    def clock_offset(self, seconds: float) -> None:
        self.clock_offset_seconds.set(seconds)

    def set_health(self, *, ready: bool, database_up: bool, gateway_auth_failing: bool) -> None:
        self.ready.set(ready)
        self.database_up.set(database_up)
        self.gateway_auth_failing.set(gateway_auth_failing)

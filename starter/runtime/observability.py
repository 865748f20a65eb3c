"""Metrics and structured logs of the worker.

Metrics: the Temporal SDK runtime serves Prometheus metrics on ``ENROLLMENTS_METRICS_PORT`` (off when unset
or 0); the project's own counters go to the same runtime meter, hence the same ``/metrics`` endpoint:

- ``enrollments_periods_started`` — periods the ``advance`` activity created (trials included);
- ``enrollments_orders_created`` — orders created with those periods;
- ``enrollments_status_changes`` — status changes recorded, labelled ``status`` (ACTIVE, PAUSED, …);
- ``enrollments_registrations_refused`` — enrollments refused at registration, labelled ``type`` (the error);
- ``enrollments_activity_failures`` — activity attempts that raised, labelled ``activity``.

Each carries ``namespace`` and ``task_queue`` labels.

They are counted by :class:`EnrollmentMetricsInterceptor`, a worker interceptor around the activities, so
the activities themselves stay free of metrics code. Prometheus adds no ``_total`` suffix (the SDK's
default).

Logs: :func:`configure_logging` installs one handler on the root logger that writes JSON lines (or plain
text) to stderr. :class:`EnrollmentIdFilter` adds ``enrollment_id`` to every record that comes from an
enrollment's workflow or activity (the SDK's workflow and activity loggers put the workflow id on the
record; ``enrollment-<id>`` becomes ``<id>``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Literal

from temporalio import activity
from temporalio.common import MetricCounter, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from adapters.lifecycle import (
    WORKFLOW_ID_PREFIX,
    ActivityName,
    AdvanceResult,
    RegisterResult,
    StatusChangeRequest,
)

LogFormat = Literal["json", "text"]

PERIODS_STARTED = "enrollments_periods_started"
ORDERS_CREATED = "enrollments_orders_created"
STATUS_CHANGES = "enrollments_status_changes"
REGISTRATIONS_REFUSED = "enrollments_registrations_refused"
ACTIVITY_FAILURES = "enrollments_activity_failures"

_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


# --- metrics ---------------------------------------------------------------------------------------------


def metrics_runtime(port: int | None, host: str = "127.0.0.1") -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics on ``host:port``; None when ``port`` is None or 0.

    Clients (and so their workers) created with ``runtime=`` report to it. Create one per process and port.
    """
    if not port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


class EnrollmentMetrics:
    """The project's counters on one metric meter (the runtime's: they appear beside the SDK's metrics)."""

    def __init__(self, meter: MetricMeter) -> None:
        self.periods_started: MetricCounter = meter.create_counter(
            PERIODS_STARTED, "Enrollment periods created (trial periods included)."
        )
        self.orders_created: MetricCounter = meter.create_counter(
            ORDERS_CREATED, "Orders created for enrollment periods."
        )
        self.status_changes: MetricCounter = meter.create_counter(
            STATUS_CHANGES, "Enrollment status changes recorded, by new status."
        )
        self.registrations_refused: MetricCounter = meter.create_counter(
            REGISTRATIONS_REFUSED, "Enrollments refused at registration, by error type."
        )
        self.activity_failures: MetricCounter = meter.create_counter(
            ACTIVITY_FAILURES, "Enrollment activity attempts that failed, by activity."
        )


class EnrollmentMetricsInterceptor(Interceptor):
    """Counts periods, orders, status changes and failed activity attempts, and logs each with its enrollment."""

    def __init__(self, meter: MetricMeter) -> None:
        self.metrics = EnrollmentMetrics(meter)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingActivityInbound(next, self.metrics)


class _CountingActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: EnrollmentMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        activity_type = info.activity_type
        labels = {"namespace": info.namespace, "task_queue": info.task_queue}
        try:
            result = await self.next.execute_activity(input)
        except BaseException as error:
            if not isinstance(error, Exception):
                raise  # cancellation and interpreter exits are not failures of the activity
            self._metrics.activity_failures.add(1, {**labels, "activity": activity_type})
            activity.logger.warning("activity %s failed: %s", activity_type, error)
            raise
        self._count(activity_type, input.args, result, labels)
        return result

    def _count(self, activity_type: str, args: Any, result: Any, labels: dict[str, str]) -> None:
        if activity_type == ActivityName.ADVANCE and isinstance(result, AdvanceResult):
            if result.periods:
                self._metrics.periods_started.add(len(result.periods), labels)
                activity.logger.info(
                    "periods started: %s",
                    ", ".join(period.start.isoformat() for period in result.periods),
                )
            if result.orders:
                self._metrics.orders_created.add(len(result.orders), labels)
                activity.logger.info("orders created: %s", ", ".join(order.number for order in result.orders))
        elif activity_type == ActivityName.REGISTER and isinstance(result, RegisterResult) and result.refused:
            self._metrics.registrations_refused.add(1, {**labels, "type": result.refused_type or "unknown"})
        elif activity_type == ActivityName.CHANGE_STATUS and args and isinstance(args[0], StatusChangeRequest):
            request = args[0]
            self._metrics.status_changes.add(1, {**labels, "status": str(request.status)})
            activity.logger.info("status changed to %s: %s", request.status, request.info)


# --- logging ---------------------------------------------------------------------------------------------


def enrollment_id_of(record: logging.LogRecord) -> str | None:
    """The enrollment a record is about: from the SDK's workflow/activity details, or an explicit extra."""
    explicit = getattr(record, "enrollment_id", None)
    if isinstance(explicit, str):
        return explicit
    for attribute in ("temporal_activity", "temporal_workflow"):
        details = getattr(record, attribute, None)
        if isinstance(details, Mapping):
            workflow_id = details.get("workflow_id")
            if isinstance(workflow_id, str) and workflow_id.startswith(WORKFLOW_ID_PREFIX):
                return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
    return None


class EnrollmentIdFilter(logging.Filter):
    """Sets ``record.enrollment_id`` on records of an enrollment's workflow or activities (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        enrollment_id = enrollment_id_of(record)
        if enrollment_id is not None:
            record.enrollment_id = enrollment_id
        return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``enrollment_id`` (when known),
    the SDK's workflow/activity details and any other ``extra`` fields; ``exc`` carries a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        enrollment_id = enrollment_id_of(record)
        if enrollment_id is not None:
            line["enrollment_id"] = enrollment_id
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_FIELDS and key not in line:
                line[key] = _jsonable(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for people: time, level, logger, ``[enrollment id]`` when known, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        enrollment_id = enrollment_id_of(record)
        return text if enrollment_id is None else f"{text} [enrollment {enrollment_id}]"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives, so a swapped stderr (a test runner's
    capture, long closed) never receives records after its owner is gone."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def log_handler(log_format: LogFormat = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (the current stderr by default) with the project's formatter and the enrollment id filter."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(EnrollmentIdFilter())
    return handler


_installed: logging.Handler | None = None


def configure_logging(log_format: LogFormat = "json", level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send the root logger's records through one project handler (replacing the one installed before)."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    _installed = log_handler(log_format, stream)
    root.addHandler(_installed)
    root.setLevel(level.upper())

"""The worker process: the worker itself, its metrics and logs, the order generator's schedule, the codec server."""

from starter.runtime.codec_server import CodecServer
from starter.runtime.observability import configure_logging, metrics_runtime
from starter.runtime.schedules import ScheduleChange, ScheduleNotFound, ScheduleView
from starter.runtime.worker import (
    DELIVERY_WORKFLOWS,
    GENERATOR_WORKFLOWS,
    WORKFLOWS,
    WorkerResources,
    build_worker,
    run_worker,
    sandbox_runner,
)

__all__ = [
    "DELIVERY_WORKFLOWS",
    "GENERATOR_WORKFLOWS",
    "WORKFLOWS",
    "CodecServer",
    "ScheduleChange",
    "ScheduleNotFound",
    "ScheduleView",
    "WorkerResources",
    "build_worker",
    "configure_logging",
    "metrics_runtime",
    "run_worker",
    "sandbox_runner",
]

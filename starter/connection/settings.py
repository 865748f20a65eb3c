"""Settings from environment variables (pydantic-settings); every process reads them the same way."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.webhooks import DeliveryPolicy, webhook_task_queue

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./.enrollments/enrollments.db"


class Settings(BaseSettings):
    """Configuration of the CLI, the worker and the client library."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL", repr=False)  # may hold a password
    temporal_address: str = Field(default="localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="enrollments", alias="ENROLLMENTS_TASK_QUEUE")
    enrollment_adapters: str = Field(default="licensed,metered", alias="ENROLLMENT_ADAPTERS")
    autoschedule_cron: str | None = Field(
        default=None,
        alias="ENROLLMENTS_AUTOSCHEDULE_CRON",
        description="cron of the order generator's schedule, created or updated at worker start (e.g. 0 0 * * *)",
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65_535, alias="ENROLLMENTS_METRICS_PORT")
    metrics_host: str = Field(default="127.0.0.1", alias="ENROLLMENTS_METRICS_HOST")
    max_cached_workflows: int = Field(
        default=1_000,
        ge=0,
        le=1_000_000,
        alias="ENROLLMENTS_MAX_CACHED_WORKFLOWS",
        description="enrollment workflows a worker keeps in memory; size it to its share of open enrollments",
    )
    log_format: Literal["json", "text"] = Field(default="json", alias="ENROLLMENTS_LOG_FORMAT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", alias="ENROLLMENTS_LOG_LEVEL")
    # Security (docs/security.md): TLS / mTLS / API key for Temporal, the payload codec key; secrets never in repr.
    temporal_tls: bool = Field(default=False, alias="TEMPORAL_TLS", description="TLS even without a CA or client cert")
    temporal_tls_ca_cert: Path | None = Field(default=None, alias="TEMPORAL_TLS_CA_CERT")
    temporal_tls_client_cert: Path | None = Field(default=None, alias="TEMPORAL_TLS_CLIENT_CERT")
    temporal_tls_client_key: Path | None = Field(default=None, alias="TEMPORAL_TLS_CLIENT_KEY")
    temporal_tls_server_name: str | None = Field(default=None, alias="TEMPORAL_TLS_SERVER_NAME")
    temporal_api_key: SecretStr | None = Field(default=None, alias="TEMPORAL_API_KEY")
    codec_key: SecretStr | None = Field(default=None, alias="ENROLLMENTS_CODEC_KEY")
    codec_token: SecretStr | None = Field(
        default=None, alias="ENROLLMENTS_CODEC_TOKEN", description="required by the codec server when set"
    )
    next_period_attribute: bool = Field(
        default=False,
        alias="ENROLLMENTS_NEXT_PERIOD_ATTRIBUTE",
        description="workflows started from here keep EnrollmentNextPeriodAt current (one Temporal action a period)",
    )
    shutdown_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3_600,
        alias="ENROLLMENTS_SHUTDOWN_SECONDS",
        description="how long a stopping worker waits for its activities before it exits anyway",
    )
    faults: str | None = Field(default=None, alias="ENROLLMENTS_FAULTS", description="test-only fault injection")
    # Webhooks (docs/events.md): where their workflows run and how hard the worker tries.
    webhook_task_queue_option: str | None = Field(
        default=None, alias="ENROLLMENTS_WEBHOOK_TASK_QUEUE", description="default: <ENROLLMENTS_TASK_QUEUE>-webhooks"
    )
    webhook_concurrency: int = Field(default=10, ge=1, le=200, alias="ENROLLMENTS_WEBHOOK_CONCURRENCY")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300, alias="ENROLLMENTS_WEBHOOK_TIMEOUT_SECONDS")
    webhook_retry_initial_seconds: float = Field(
        default=2.0, gt=0, le=3_600, alias="ENROLLMENTS_WEBHOOK_RETRY_INITIAL_SECONDS"
    )
    webhook_retry_max_seconds: float = Field(
        default=600.0, gt=0, le=86_400, alias="ENROLLMENTS_WEBHOOK_RETRY_MAX_SECONDS"
    )
    webhook_retry_hours: float = Field(default=72.0, gt=0, alias="ENROLLMENTS_WEBHOOK_RETRY_HOURS")
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=3_600, alias="ENROLLMENTS_WEBHOOK_POLL_SECONDS")

    @field_validator(
        "temporal_tls_ca_cert",
        "temporal_tls_client_cert",
        "temporal_tls_client_key",
        "temporal_tls_server_name",
        "temporal_api_key",
        "codec_key",
        "codec_token",
        "faults",
        "webhook_task_queue_option",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("autoschedule_cron", mode="before")
    @classmethod
    def _blank_cron_is_off(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("task_queue", "temporal_address", "temporal_namespace", "database_url")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @cached_property
    def adapter_names(self) -> list[str]:
        """``ENROLLMENT_ADAPTERS`` as an ordered list of built-in adapter names."""
        return [name.strip() for name in self.enrollment_adapters.split(",") if name.strip()]

    @property
    def webhook_task_queue(self) -> str:
        """The task queue of the webhook delivery workflows: its own, next to the enrollments' one."""
        return self.webhook_task_queue_option or webhook_task_queue(self.task_queue)

    def delivery_policy(self) -> DeliveryPolicy:
        """How the worker delivers webhooks (``ENROLLMENTS_WEBHOOK_*``)."""
        return DeliveryPolicy(
            timeout_seconds=self.webhook_timeout_seconds,
            retry_initial_seconds=self.webhook_retry_initial_seconds,
            retry_max_seconds=self.webhook_retry_max_seconds,
            retry_for_seconds=self.webhook_retry_hours * 3_600,
            concurrency=self.webhook_concurrency,
            poll_seconds=self.webhook_poll_seconds,
        )

"""Settings from environment variables (pydantic-settings); every process reads them the same way."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./.enrollments/enrollments.db"


class Settings(BaseSettings):
    """Configuration of the CLI, the worker and the client library."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    temporal_address: str = Field(default="localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="enrollments", alias="ENROLLMENTS_TASK_QUEUE")
    enrollment_adapters: str = Field(default="licensed", alias="ENROLLMENT_ADAPTERS")

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

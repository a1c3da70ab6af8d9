"""Settings: built once at start from arguments, ``ACED_*`` environment variables and an optional TOML
file (path in ``ACED_CONFIG``), in that order of precedence, then passed down. Nothing else reads the
environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ConfigError(Exception):
    """A setting or the config file is invalid; the message is one readable line."""


class Settings(BaseSettings):
    """Every setting of aced. Env var = ``ACED_`` + upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="ACED_", extra="forbid", validate_default=True)

    # -- where things live
    data_dir: Path = Field(default=Path("aced-data"), description="Store, logs, reports, embedded Redis.")
    config: Path | None = Field(default=None, description="Optional TOML file with these same keys.")

    # -- Redis
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://, rediss:// (TLS), unix://. Unset: start the embedded server under data_dir.",
    )
    redis_username: str | None = Field(default=None, description="ACL user (overrides the URL's).")
    redis_password: SecretStr | None = Field(default=None, description="Password (overrides the URL's).")
    redis_tls_ca_file: Path | None = Field(
        default=None, description="CA bundle that signed the server's certificate (rediss:// URLs)."
    )
    redis_server_binary: Path | None = Field(
        default=None, description="redis-server for the embedded default; else the packaged one, else PATH."
    )
    key_prefix: str = Field(default="aced", pattern=r"^[A-Za-z0-9_.-]{1,32}$")

    # -- consuming
    consumer_name: str | None = Field(default=None, description="Default: <host>-<pid>.")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Entries per XREADGROUP.")
    block_ms: int = Field(default=1000, ge=1, le=60_000, description="Longest wait of one XREADGROUP.")
    max_in_flight: int = Field(default=2, ge=1, le=16, description="Batches read but not yet acked.")
    max_deliveries: int = Field(default=5, ge=1, description="Deliveries before an entry is dead-lettered.")
    claim_idle_ms: int = Field(default=60_000, ge=1, description="Janitor claims entries idle this long.")
    janitor_interval_s: float = Field(default=10.0, gt=0)
    discover_interval_s: float = Field(default=1.0, gt=0, description="Stream discovery period.")
    retention_s: float = Field(
        default=7 * 86400.0, ge=0, description="Trim committed+acked entries older than this; 0 never trims."
    )
    forget_consumer_idle_s: float = Field(
        default=86400.0, gt=0, description="Remove other consumers idle this long that hold nothing."
    )
    max_content_bytes: int = Field(default=256 * 1024, ge=1, le=64 * 1024 * 1024)
    max_entry_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Entries larger than this are dead-lettered unread."
    )

    # -- store
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        default="FULL", description="FULL: a commit is on disk before the daemon acks it."
    )
    store_retry_s: float = Field(default=1.0, gt=0, description="First retry delay when the store fails.")

    # -- tagging
    tagger: Literal["rules", "none"] = Field(default="rules")
    tag_history: int = Field(default=20, ge=0, le=1000, description="Earlier messages a tagger sees.")
    tag_in_process: bool = Field(
        default=False,
        description="Tag in the daemon's process; False (default): the rules tagger runs in a child process.",
    )
    tag_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Child processes the rules tagger runs in (each owns a share of the conversations); "
        "more than one pays off only with a core free for each.",
    )
    tag_core: Literal["auto", "compiled", "python"] = Field(
        default="auto",
        description="Which implementation runs the rules tagger's steps: the compiled core (built by pip "
        "install), the Python steps, or auto (the core where it was built). The same tags either way.",
    )
    tier_model: bool = Field(
        default=True,
        description="The linear tier model makes the final tier decision; False: the rules' hand-weighted "
        "votes decide (faster, less accurate; tags say so in their tagger_version).",
    )
    classifier_dir: Path | None = Field(
        default=None,
        description="A fine-tuned classifier (tier and signals) trained into this directory (python -m "
        "daemon.tagging.train_classifier) adds its tags to every new record as a second tag version, after "
        "ingest; unset (default): none. Needs the classifier extra.",
    )

    # -- operations
    health_interval_s: float = Field(default=5.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout_s: float = Field(default=30.0, gt=0, description="Longest wait for the batch in flight.")

    @field_validator("data_dir", "classifier_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments beat the environment, which beats the TOML file named by ``ACED_CONFIG``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("ACED_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    # -- derived paths and names
    @property
    def store_path(self) -> Path:
        """The SQLite file."""
        return self.data_dir / "aced.sqlite3"

    @property
    def redis_dir(self) -> Path:
        """The embedded Redis server's working directory (AOF files)."""
        return self.data_dir / "redis"

    @property
    def redis_socket(self) -> Path:
        """The embedded Redis server's unix socket: every CLI command with this data dir finds it here."""
        return self.redis_dir / "redis.sock"

    @property
    def consumer(self) -> str:
        """This daemon's consumer name in the group."""
        return self.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any problem into one readable :class:`ConfigError` line."""
    from pydantic import ValidationError

    toml_path = os.environ.get("ACED_CONFIG")
    if toml_path and not Path(toml_path).is_file():
        raise ConfigError(f"ACED_CONFIG names {toml_path!r}, which is not a readable file")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"invalid setting {where}: {first['msg']}{more}") from None
    except (OSError, ValueError) as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"cannot read configuration: {exc}") from None

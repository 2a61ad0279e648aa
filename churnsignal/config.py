"""The one configuration object: defaults, then an optional YAML file, then environment.

Every setting can be given as ``CHURNSIGNAL_<NAME>`` (nested with ``__``, e.g.
``CHURNSIGNAL_SENTIMENT__NEUTRAL_LOW=0.4``) or in the YAML file named by
``CHURNSIGNAL_CONFIG``. Environment wins over YAML so a deployment can override one
value without editing the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

class SentimentSettings(BaseModel):
    """Where the sentiment model lives and how its probability becomes a label."""

    # Any Hugging Face BERT sequence-classification directory (save_pretrained layout);
    # None means the model shipped with the package.
    model_dir: Path | None = None
    # negative_prob inside [neutral_low, neutral_high) is reported as "neutral".
    neutral_low: float = Field(0.35, ge=0.0, le=1.0)
    neutral_high: float = Field(0.65, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1)
    max_tokens: int = Field(128, ge=16, le=512)
    threads: int | None = Field(None, ge=1)
    # Index of the "negative" class for a user's checkpoint whose id2label does not say.
    negative_label: int | None = Field(None, ge=0)
    # Dynamic int8 on the CPU: faster at a small accuracy cost (see model_cards/sentiment.md).
    quantize: bool = True

    @model_validator(mode="after")
    def _band_is_ordered(self) -> SentimentSettings:
        if self.neutral_low > self.neutral_high:
            raise ValueError("sentiment.neutral_low must not exceed sentiment.neutral_high")
        return self


class EntitySettings(BaseModel):
    """Where the spaCy complaint-entity pipeline lives (None: the shipped one)."""

    model_dir: Path | None = None


class Settings(BaseSettings):
    """All of churnsignal's settings."""

    model_config = SettingsConfigDict(env_prefix="CHURNSIGNAL_", env_nested_delimiter="__", extra="forbid")

    sentiment: SentimentSettings = SentimentSettings()
    entities: EntitySettings = EntitySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("CHURNSIGNAL_CONFIG")
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"CHURNSIGNAL_CONFIG points at {path}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load the settings once per process."""
    return Settings()

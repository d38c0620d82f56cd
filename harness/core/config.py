"""Where harness keeps things between runs, and the one reader of the config file (harness.toml).

    [models.qwen7b]                      # a model profile: read by harness.models.spec
    spec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"
    base_url = "http://gpu-box:8000/v1"

    [eval]                               # defaults of `harness eval`
    models = ["qwen7b", "scripted:nph-evans"]
    executor = "ray"                     # where jobs run: "local" (default) or "ray"
    ray_address = "10.0.0.5:6379"        # the Ray head, for executor = "ray"

This module reads the file and checks its shape; what a table means is up to the code that uses it. Every command
takes --config FILE; without it ./harness.toml is read when it exists, and no file means empty sections.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import PathError

CONFIG_FILENAME = "harness.toml"


class ConfigError(PathError):
    """A config file that cannot be used: "PATH: problem"."""


@dataclass(frozen=True)
class HarnessConfig:
    path: Path | None = None  # None: no config file
    models: dict[str, Any] = field(default_factory=dict)  # [models.NAME] profile tables, as written
    eval: dict[str, Any] = field(default_factory=dict)  # [eval] table, as written

    @property
    def eval_models(self) -> list[str]:
        """[eval] models: what `harness eval` runs when no --model is given (a single string is a list of one)."""
        models = self.eval.get("models", [])
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ConfigError(self.path, "[eval] models must be a list of model names or specs")
        return models


    def eval_text(self, key: str) -> str | None:
        """[eval] KEY when it is a string (executor, ray_address); None when it is not set."""
        value = self.eval.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.path, f"[eval] {key} must be a string, got {value!r}")
        return value


def default_config_path() -> Path | None:
    """./harness.toml when it exists."""
    path = Path.cwd() / CONFIG_FILENAME
    return path if path.is_file() else None


def load_config(path: Path | str | None = None) -> HarnessConfig:
    """The config file at `path` (an error when it does not exist), else ./harness.toml, else an empty config."""
    path = Path(path) if path is not None else default_config_path()
    if path is None:
        return HarnessConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(path, "config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not valid TOML ({exc})") from None
    sections = {}
    for name, what in (("models", "a table of profiles"), ("eval", "a table")):
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(path, f"[{name}] must be {what}")
        sections[name] = table
    return HarnessConfig(path, **sections)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/harness, else ~/.cache/harness. Commands take --cache-dir to put it elsewhere."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"

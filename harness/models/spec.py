"""Model specs (`vllm:Qwen/Qwen2.5-VL-7B-Instruct`, `openai:gpt-4.1`, `hf:PATH`, `scripted:NAME`, ...) and named
profiles from a TOML file, so a team can share endpoints and limits:

    [models.qwen7b]
    spec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"
    base_url = "http://gpu-box:8000/v1"   # or base_urls = [...]: replicas of one model (harness.models.replicas)
    max_images = 8
    native_tools = true

API keys are never stored here: a profile names the environment variable that holds the key (`api_key_env`).
What each backend defaults to (base URL, key variable, tool protocol) is declared by the backend itself
(harness.models.backends).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from harness.core.config import ConfigError, HarnessConfig, load_config
from harness.models.backends import backend_names, backend_of, model_backends
from harness.models.types import ModelConfigError

DEFAULT_SERVE_COMMAND = "vllm serve {model} --host {host} --port {port}"


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    model: str  # id, local path, or scripted baseline name; sent as the request's `model`
    name: str = ""  # profile name, or the spec string
    base_url: str | None = None
    # Replicas serving the same weights (vLLM data-parallel: one server per GPU): requests are spread over them.
    # base_url is the first; it alone names the deployment in cache keys and sample ids, so which replica answered,
    # or how many there are, changes neither.
    replicas: tuple[str, ...] = ()
    api_key_env: str | None = None  # name of the environment variable holding the key; never the key
    revision: str | None = None  # goes into cache keys; set it when a server's weights can change under one id
    max_concurrency: int = 16
    timeout_s: float = 300.0
    max_retries: int = 5
    max_images: int | None = None  # per request; older images are dropped beyond it
    max_pixels: int | None = None  # per image; larger images are downscaled
    native_tools: bool | None = None  # None: the backend's native_tools_default (OpenAI yes, others: text protocol)
    images_in_tool_results: bool = False  # most chat APIs take images only in user messages
    max_reply_chars: int = 1_000_000
    extra_body: dict = field(default_factory=dict)  # passed through to the server (e.g. vLLM chat_template_kwargs)
    serve_command: str = DEFAULT_SERVE_COMMAND  # for --serve; {model} {host} {port} are filled in
    device: str | None = None  # in-process backends: "cpu", "cuda", ...

    @property
    def uses_native_tools(self) -> bool:
        if self.native_tools is not None:
            return self.native_tools
        return model_backends.get(self.backend).native_tools_default  # not backend_of: this runs on every request

    @property
    def endpoint(self) -> str:
        """What distinguishes one deployment of a model from another in cache keys and concurrency limits."""
        return self.base_url or f"{self.backend}:local"

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ModelConfigError(f"model {self.name or self.model!r} reads its API key from ${self.api_key_env}, which is not set")
        return key

    def describe(self) -> dict:
        """Settings for listings and run manifests: no key, only the name of its variable."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in d.items() if v not in (None, {}, "", ()) and not (k == "images_in_tool_results" and v is False)}


_FIELD_TYPES = {f.name: f.type for f in fields(ModelSpec)}


def parse_model_spec(text: str, **settings) -> ModelSpec:
    """`BACKEND:MODEL` -> ModelSpec; `settings` override the backend's defaults (base_url, max_images, ...)."""
    backend, sep, model = text.partition(":")
    backend = backend.strip().lower()
    if not sep or not model.strip():
        raise ModelConfigError(f"cannot read model spec {text!r}; use BACKEND:MODEL with BACKEND one of {', '.join(backend_names())}")
    if backend not in model_backends:
        raise ModelConfigError(f"unknown model backend {backend!r} in {text!r}; use one of {', '.join(backend_names())}")
    declared = backend_of(backend)
    unknown = set(settings) - set(_FIELD_TYPES) - {"spec", "base_urls"}
    if unknown:
        raise ModelConfigError(f"unknown model setting(s) {', '.join(sorted(unknown))} for {text!r}; known: {', '.join(sorted(_FIELD_TYPES))}")
    settings = _with_replicas({k: v for k, v in settings.items() if v is not None and k != "spec"}, text)
    base = dict(
        backend=backend,
        model=model.strip(),
        name=text,
        base_url=declared.default_base_url,
        api_key_env=declared.default_key_env,
        revision=declared.default_revision(model.strip()),
    )
    if declared.needs_base_url and not settings.get("base_url"):
        raise ModelConfigError(f"{text!r} needs a base URL (--base-url or base_url in the profile), e.g. http://localhost:30000/v1")
    base.update(settings)
    if base.get("base_url"):
        base["base_url"] = str(base["base_url"]).rstrip("/")
    try:
        spec = ModelSpec(**base)
    except TypeError as exc:
        raise ModelConfigError(f"bad settings for {text!r}: {exc}") from None
    for name in ("max_concurrency", "max_retries", "max_images", "max_pixels"):
        value = getattr(spec, name)
        if value is not None and (not isinstance(value, int) or value < (0 if name == "max_retries" else 1)):
            raise ModelConfigError(f"{name} for {text!r} must be a positive integer, got {value!r}")
    return spec


def _with_replicas(settings: dict, text: str) -> dict:
    """`base_urls = [...]` (several replicas of one model) -> base_url (the first) and replicas (all of them)."""
    urls = settings.pop("base_urls", None)
    if urls is None:
        return settings
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, (list, tuple)) or not urls or not all(isinstance(u, str) and u.strip() for u in urls):
        raise ModelConfigError(f"base_urls for {text!r} must be a non-empty list of URLs, got {urls!r}")
    if settings.get("base_url"):
        raise ModelConfigError(f"{text!r} has both base_url and base_urls; list every replica in base_urls")
    urls = [u.strip().rstrip("/") for u in urls]
    if len(set(urls)) != len(urls):
        raise ModelConfigError(f"base_urls for {text!r} lists a URL twice: {urls}")
    return {**settings, "base_url": urls[0], "replicas": tuple(urls) if len(urls) > 1 else ()}


def load_profiles(config: HarnessConfig | Path | str | None = None) -> dict[str, ModelSpec]:
    """Profiles from the `[models.NAME]` tables of a config file (default: ./harness.toml when it exists)."""
    if not isinstance(config, HarnessConfig):
        try:
            config = load_config(config)
        except ConfigError as exc:
            raise ModelConfigError(str(exc)) from None
    path = config.path
    profiles = {}
    for name, settings in config.models.items():
        if not isinstance(settings, dict) or not isinstance(settings.get("spec"), str):
            raise ModelConfigError(f"{path}: profile [models.{name}] needs spec = \"BACKEND:MODEL\"")
        if "api_key" in settings:
            raise ModelConfigError(f"{path}: profile [models.{name}] holds an API key; name its environment variable with api_key_env instead")
        try:
            spec = parse_model_spec(settings["spec"], **{k: v for k, v in settings.items() if k != "spec"})
        except ModelConfigError as exc:
            raise ModelConfigError(f"{path}: profile [models.{name}]: {exc}") from None
        profiles[name] = replace(spec, name=name)
    return profiles


def resolve_model_spec(name_or_spec: str, config: HarnessConfig | Path | str | None = None, **overrides) -> ModelSpec:
    """A profile name from the config file, else a `BACKEND:MODEL` spec; command-line overrides win."""
    profiles = load_profiles(config)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if name_or_spec in profiles:
        spec = profiles[name_or_spec]
        if "base_url" in overrides or "base_urls" in overrides:  # the command line's URLs replace the profile's
            overrides = _with_replicas({**overrides, "replicas": ()}, name_or_spec)
        return replace(spec, **overrides) if overrides else spec
    if ":" not in name_or_spec:
        known = ", ".join(sorted(profiles)) or "none configured"
        raise ModelConfigError(f"{name_or_spec!r} is neither a profile (profiles: {known}) nor a BACKEND:MODEL spec")
    return parse_model_spec(name_or_spec, **overrides)

"""`harness models`: what models are configured, and a one-request check that an endpoint answers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Optional

import typer

from harness.core.config import CONFIG_FILENAME, load_config
from harness.models import (ImagePart, Message, Sampling, create_model, load_profiles, model_backends, resolve_model_spec,
                            scripted_names, scripted_revision, serve_model)

# "\[" : the help is rich markup, where a bare [models.NAME] would be read as a style and vanish
CONFIG_HELP = f"TOML file with \\[models.NAME] profiles (default: ./{CONFIG_FILENAME} when present)."

models_app = typer.Typer(help="Model profiles, backends and scripted baselines; `models check` sends one test request.", no_args_is_help=False, invoke_without_command=True)


@models_app.callback()
def list_models(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
):
    """List the configured model profiles, the backends and the scripted baselines."""
    ctx.obj = {**(ctx.obj or {}), "config": config}  # `models --config F check NAME` means the same as `check NAME --config F`
    if ctx.invoked_subcommand is not None:
        return
    cfg = load_config(config)
    profiles = load_profiles(cfg)
    typer.echo(f"profiles ({cfg.path if cfg.path else f'no ./{CONFIG_FILENAME}'}):")
    if not profiles:
        typer.echo("  none - add [models.NAME] tables with spec = \"BACKEND:MODEL\" to a harness.toml")
    width = max((len(n) for n in profiles), default=0)
    for name, spec in profiles.items():
        extras = [f"{k}={v}" for k, v in spec.describe().items() if k not in ("backend", "model", "name", "serve_command", "max_reply_chars", "timeout_s", "max_retries", "max_concurrency")]
        typer.echo(f"  {name:<{width}}  {spec.backend}:{spec.model}  {' '.join(extras)}")
    typer.echo("backends (use BACKEND:MODEL anywhere a model is asked for):")
    entries = sorted(model_backends.entries(), key=lambda e: e.name)
    width = max(len(e.name) for e in entries)
    for entry in entries:
        typer.echo(f"  {entry.name:<{width}}  {_describe_backend(entry.obj)}")
        if not entry.built_in:
            typer.echo(f"  {'':<{width}}  from {entry.origin}")
    typer.echo("scripted baselines (scripted:NAME; the revision is a hash of the baseline's code):")
    names = scripted_names()
    width = max((len(n) for n in names), default=0)
    for name in names:
        typer.echo(f"  {name:<{width}}  {scripted_revision(name) or 'no revision'}")


def _describe_backend(backend) -> str:
    notes = [backend.description]
    if backend.default_base_url:
        notes.append(f"default {backend.default_base_url}")
    if backend.default_key_env:
        notes.append(f"key from ${backend.default_key_env}")
    if backend.needs_base_url:
        notes.append("needs --base-url")
    if backend.servable:
        notes.append("--serve starts the server")
    return "; ".join(notes)


@models_app.command("check")
def check(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A profile name or BACKEND:MODEL."),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Server URL, e.g. http://localhost:8000/v1."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable that holds the API key."),
    image: Optional[Path] = typer.Option(None, "--image", help="A PNG to send with the prompt."),
    prompt: str = typer.Option("Reply with the single word: ready.", "--prompt"),
    serve: bool = typer.Option(False, "--serve", help="Start the profile's serve_command first and stop it afterwards."),
):
    """Send one request and print the reply, latency and tokens (or the failure and its reason)."""
    config = config or (ctx.obj or {}).get("config")
    spec = resolve_model_spec(model, config, base_url=base_url, api_key_env=api_key_env)
    parts: list = [prompt]
    if image is not None:
        parts.append(ImagePart.from_png(image.read_bytes(), label=image.name))

    async def go(s):
        m = create_model(s)
        try:
            return await m.chat([Message.user(*parts)], sampling=Sampling(max_tokens=32))
        finally:
            await m.aclose()

    with (serve_model(spec) if serve else contextlib.nullcontext(spec)) as live:
        reply = asyncio.run(go(live))
    typer.echo(f"model:    {live.name} ({live.backend}:{live.model} at {live.endpoint})")
    typer.echo(f"reply:    {reply.text.strip()[:500]!r}")
    typer.echo(f"finish:   {reply.finish_reason}  latency {reply.latency_s * 1000:.0f} ms  tokens {reply.usage.prompt_tokens}+{reply.usage.completion_tokens}  attempts {reply.attempts}")
    for call in reply.tool_calls:
        typer.echo(f"tool:     {call.name}({call.raw_arguments})" + (f"  [{call.error}]" if call.error else ""))
    for note in reply.image_adjustments:
        typer.echo(f"image:    {note}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

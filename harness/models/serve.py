"""`--serve`: start an OpenAI-compatible server for a local model, wait until it is healthy, stop it afterwards.

The command comes from the profile (`serve_command`, default `vllm serve {model} --host {host} --port {port}`);
its output goes to a log file whose tail is shown when the server never becomes healthy.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

from harness.core.failures import FailureKind
from harness.models.backends import backend_of
from harness.models.spec import ModelSpec
from harness.models.types import ModelConfigError, ModelError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _healthy(base_url: str) -> bool:
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    for url in (root + "/health", base_url + "/models"):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def serve_model(spec: ModelSpec, *, host: str = "127.0.0.1", port: int | None = None, startup_timeout_s: float = 900.0,
                log_path: Path | None = None, env: dict | None = None):
    """Run the spec's serve_command; yields the spec pointed at the new server (backend vllm / openai-compatible)."""
    port = port or free_port(host)
    try:
        argv = shlex.split(spec.serve_command.format(model=spec.model, host=host, port=port))
    except (KeyError, IndexError, ValueError) as exc:
        raise ModelConfigError(f"cannot build the serve command from {spec.serve_command!r}: {exc}") from None
    if not argv:
        raise ModelConfigError("the serve command is empty")
    base_url = f"http://{host}:{port}/v1"
    log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="harness-serve-", suffix=".log")[1])
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        except OSError as exc:
            raise ModelError(FailureKind.CONNECTION, f"cannot start {argv[0]!r}: {exc}") from None
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _healthy(base_url):
            if proc.poll() is not None:
                raise ModelError(FailureKind.CONNECTION, f"the server ({argv[0]}) exited with code {proc.returncode} before becoming healthy; log {log_path}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ModelError(FailureKind.TIMEOUT, f"the server ({argv[0]}) was not healthy at {base_url} after {startup_timeout_s:g} s; log {log_path}:\n{_tail(log_path)}")
            time.sleep(0.25)
        # a backend that cannot be served itself (e.g. hf:) is reached as the OpenAI-compatible server just started
        backend = spec.backend if backend_of(spec).servable else "openai-compatible"
        yield replace(spec, backend=backend, base_url=base_url, replicas=())  # the one server started here
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

"""Task registry: name -> Task class, imported on first use so listing tasks stays cheap."""

from __future__ import annotations

from importlib import import_module

from harness.core.errors import HarnessError
from tasks.base import Metric, ModelInput, Task

# name -> "module:Class". One line per task; adding a task = a module, a prompt folder and a line here.
_TASKS: dict[str, str] = {
    "nph-evans": "tasks.nph_evans.task:NphEvansTask",
    "tumor-slice": "tasks.tumor.slice:TumorSliceTask",
    "tumor-dx": "tasks.tumor.dx:TumorDxTask",
    "ct-report": "tasks.ct_report.task:CtReportTask",
}

_instances: dict[str, Task] = {}


class UnknownTaskError(HarnessError):
    pass


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(_TASKS) or 'none'}")
    if name not in _instances:
        module, cls = _TASKS[name].split(":")
        _instances[name] = getattr(import_module(module), cls)()
    return _instances[name]


__all__ = ["Metric", "ModelInput", "Task", "UnknownTaskError", "get_task", "task_names"]

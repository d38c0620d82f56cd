"""The task registry. A task declares itself where it is defined:

    @register_task
    class MyTask(Task):
        name = "my-task"
        ...

Built-in tasks are found by importing every module below tasks/; tasks of other packages come from the
`harness.tasks` entry-point group (harness.core.registry).
"""

from __future__ import annotations

from harness.core.registry import Registry, UnknownNameError
from tasks.base import Metric, ModelInput, SetStatistic, Task, TruthField

task_registry: Registry[type[Task]] = Registry(
    "task", packages=("tasks",), group="harness.tasks",
    accepts=lambda obj: isinstance(obj, Task) or (isinstance(obj, type) and issubclass(obj, Task)),
)
UnknownTaskError = UnknownNameError
_instances: dict[int, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register a Task subclass under its `name`."""
    return task_registry.register()(cls)


def task_names() -> list[str]:
    return task_registry.names()


def get_task(name: str) -> Task:
    """The task called `name` (one instance per registered class)."""
    obj = task_registry.get(name)
    if isinstance(obj, Task):
        return obj
    key = id(obj)
    if key not in _instances:
        _instances[key] = obj()
    return _instances[key]


__all__ = ["Metric", "ModelInput", "SetStatistic", "Task", "TruthField", "UnknownTaskError", "get_task", "register_task",
           "task_names", "task_registry"]

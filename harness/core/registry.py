"""One registry pattern for everything harness looks up by name: tasks, defacers, model backends, scripted baselines.

A thing is declared where it is defined, with its registry's decorator:

    @register_task
    class NphEvansTask(Task):
        name = "nph-evans"

Before it answers anything, a registry imports every module of its built-in packages (so what it lists never
depends on what happened to be imported first), then loads the Python entry points of its group, so another
package adds a task, a defacer or a backend without editing this project:

    # the plug-in's pyproject.toml
    [project.entry-points."harness.tasks"]
    my-task = "my_lab.my_task:MyTask"        # an object: registered under the entry point's name
    more = "my_lab.more_tasks"               # a module: imported; its decorators register what it defines

A plug-in that fails to import is skipped with a warning naming it; the built-ins still work. Two different
objects under one name are an error that names both origins: a plug-in never silently replaces a built-in.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from harness.core.errors import HarnessError, HarnessWarning

T = TypeVar("T")


class RegistryError(HarnessError):
    """A name registered twice, or a plug-in entry point that names something of the wrong kind."""


class UnknownNameError(RegistryError):
    """A name nobody registered; the message lists what is available."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    origin: str  # the defining module, or "plug-in DIST (GROUP entry point NAME = VALUE)"
    built_in: bool = False  # defined in one of the registry's own packages


class Registry(Generic[T]):
    """Name -> object, filled by decorators in `packages` and by entry points of `group`.

    accepts(obj) says whether an entry point's object is of this registry's kind. `import_groups` are further
    entry-point groups whose targets are only imported, for the declarations inside them (scripted baselines
    live next to their task, so the baseline registry imports the modules of the `harness.tasks` group).
    """

    def __init__(self, kind: str, *, packages: Sequence[str] = (), group: str | None = None,
                 accepts: Callable[[Any], bool] = lambda obj: True, import_groups: Sequence[str] = ()):
        self.kind = kind
        self.packages = tuple(packages)
        self.group = group
        self.accepts = accepts
        self.import_groups = tuple(import_groups)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    # --- declaring --------------------------------------------------------------------------------------------
    def register(self, name: str | None = None):
        """Decorator: register the decorated object under `name` (default: its `name` attribute)."""

        def deco(obj):
            key = name if name is not None else getattr(obj, "name", None)
            if not isinstance(key, str) or not key:
                raise RegistryError(f"a {self.kind} needs a name: register({type(obj).__name__}) without one")
            self.add(key, obj, getattr(obj, "__module__", None) or "?")
            return obj

        return deco

    def add(self, name: str, obj: T, origin: str) -> None:
        built_in = self._built_in(origin)
        if not built_in:
            # Built-ins first: a name clash then blames the newcomer, not the built-in that happened to load later.
            self.load()
        with self._lock:
            old = self._entries.get(name)
            if old is not None and old.obj is not obj:
                raise RegistryError(f"{self.kind} {name!r} is registered twice: by {old.origin} and by {origin}")
            self._entries[name] = Entry(name, obj, origin, built_in)

    def _built_in(self, origin: str) -> bool:
        return any(origin == p or origin.startswith(p + ".") for p in self.packages)

    # --- looking up -------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """In declaration order: built-ins in package order, then plug-ins."""
        self.load()
        return list(self._entries)

    def get(self, name: str) -> T:
        self.load()
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {known}")
        return entry.obj

    def entries(self) -> list[Entry[T]]:
        self.load()
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._entries

    @contextmanager
    def override(self, name: str, obj: T) -> Iterator[None]:
        """Within the block, `name` means `obj` (tests and experiments); the previous entry comes back after."""
        self.load()
        with self._lock:
            previous = self._entries.get(name)
            self._entries[name] = Entry(name, obj, "override")
        try:
            yield
        finally:
            with self._lock:
                if previous is None:
                    self._entries.pop(name, None)
                else:
                    self._entries[name] = previous

    # --- discovery --------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Import the built-in packages and the plug-ins, once. Re-entrant: a module being imported may register."""
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for package in self.packages:
                    _import_all(package)
                for group in self.import_groups:
                    for ep in _entry_points(group):
                        self._load_entry_point(ep, register=False)
                if self.group:
                    for ep in _entry_points(self.group):
                        self._load_entry_point(ep, register=True)
                self._loaded = True
            finally:
                self._loading = False

    def _load_entry_point(self, ep: metadata.EntryPoint, *, register: bool) -> None:
        dist = getattr(ep.dist, "name", None) or "?"
        origin = f"plug-in {dist} ({ep.group} entry point {ep.name} = {ep.value})"
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not take the built-ins down with it
            warnings.warn(HarnessWarning(f"{origin} failed to load and is skipped: {type(exc).__name__}: {exc}"), stacklevel=2)
            return
        if not register or isinstance(obj, types.ModuleType):
            return  # imported for the declarations inside it
        if not self.accepts(obj):
            raise RegistryError(f"{origin} names {obj!r}, which is not a {self.kind}")
        self.add(ep.name, obj, origin)


def _import_all(package: str) -> None:
    """Import a package and every module below it (their decorators register what they define)."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    # one distribution can be visible twice (an editable install plus its source folder on sys.path)
    seen, out = set(), []
    for ep in metadata.entry_points(group=group):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out

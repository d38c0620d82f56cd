"""The defacer registry: every defacer declares itself where it is defined, plug-ins come through entry points.

A registered object is a Defacer subclass or a factory `(**params) -> Defacer`, under the name users type:

    @register_defacer
    class Quickshear(Defacer):
        name = "quickshear"

    # a lab's package, pyproject.toml
    [project.entry-points."harness.defacers"]
    my-defacer = "my_lab.defacing:MyDefacer"

A name ending in `:NAME` registers a family of names: `precomputed:NAME` makes `precomputed:mri_reface` by calling
its maker with the part after the colon first, `make("mri_reface", **params)`.
"""

from __future__ import annotations

from typing import Any, Callable

from defacers.base import Defacer, DefacerError
from harness.core.registry import Registry, UnknownNameError

ENTRY_POINT_GROUP = "harness.defacers"
FAMILY_SUFFIX = ":NAME"


def _is_defacer_maker(obj: Any) -> bool:
    if isinstance(obj, type):
        return issubclass(obj, Defacer)
    return callable(obj)  # a factory: what it makes is checked when it is called


defacer_registry: Registry[Callable[..., Defacer]] = Registry(
    "defacer", packages=("defacers",), group=ENTRY_POINT_GROUP, accepts=_is_defacer_maker
)


class UnknownDefacerError(DefacerError, UnknownNameError):
    """A defacer name nobody registered; the message lists the known ones."""


def register_defacer(target=None):
    """`@register_defacer` on a Defacer subclass registers it under its `name`; `register_defacer("NAME")(factory)`
    registers a factory under NAME."""
    if target is None or isinstance(target, str):
        return defacer_registry.register(target)
    return defacer_registry.register()(target)


def get(name: str, **params) -> Defacer:
    """The defacer called `name`, configured by `params` (they become part of its identity and cache key)."""
    prefix, colon, member = name.partition(":")
    family = prefix + FAMILY_SUFFIX
    if colon and member and family in defacer_registry:
        defacer = defacer_registry.get(family)(member, **params)
    else:
        try:
            make = defacer_registry.get(name)
        except UnknownNameError:
            raise UnknownDefacerError(f"unknown defacer {name!r}; available: {', '.join(names())}") from None
        defacer = make(**params)
    if not isinstance(defacer, Defacer):
        raise DefacerError(f"defacer {name!r} made {type(defacer).__name__}, not a Defacer; a bug in the plug-in that registered it")
    return defacer


def names() -> list[str]:
    """Native defacers first (original, then by name), then tool adapters and other prefixed families."""
    return sorted(defacer_registry.names(), key=lambda n: (":" in n, n != "original", n))

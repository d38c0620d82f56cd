"""Model backends, by name: the BACKEND of a `BACKEND:MODEL` spec. One module each in this package.

A backend is a ChatModel subclass that declares itself, and what the rest of harness needs to know about it, as
class attributes (see harness.models.base.ChatModel):

    @register_backend
    class MyServerModel(OpenAICompatModel):
        name = "my-server"
        description = "our lab's gateway"
        default_base_url = "https://gateway.example/v1"
        default_key_env = "MY_GATEWAY_KEY"

Another package adds one through the `harness.backends` entry-point group, without editing harness. Listing the
backends imports none of the heavy libraries (openai, transformers, vLLM, torch): a backend imports its library
when a model is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.registry import Registry, UnknownNameError
from harness.models.types import ModelConfigError

if TYPE_CHECKING:
    from harness.models.base import ChatModel
    from harness.models.spec import ModelSpec


def _is_backend(obj: Any) -> bool:
    from harness.models.base import ChatModel  # base imports the spec module, which imports this one

    return isinstance(obj, type) and issubclass(obj, ChatModel)


model_backends: Registry[type[ChatModel]] = Registry(
    "model backend", packages=("harness.models.backends",), group="harness.backends", accepts=_is_backend
)


def register_backend(cls: type[ChatModel]) -> type[ChatModel]:
    """Class decorator: register a backend under its `name`."""
    return model_backends.register()(cls)


def backend_names() -> list[str]:
    return model_backends.names()


def backend_of(spec_or_name: ModelSpec | str) -> type[ChatModel]:
    """The backend class of a ModelSpec, a `BACKEND:MODEL` spec or a backend name. Its class attributes say what
    applies to it: `backend_of(spec).takes_base_url`, `.servable`, `.default_base_url`, ..."""
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.backend
    name = name.partition(":")[0].strip().lower()
    try:
        return model_backends.get(name)
    except UnknownNameError:
        raise ModelConfigError(f"unknown model backend {name!r}; use one of {', '.join(backend_names())}") from None

"""Model registry: name -> builder.

Builders register themselves where they are defined::

    @register_model("fcn8s", task="semantic", description="FCN-8s, VGG16, Long et al. 2015")
    def fcn8s(num_classes=21, **kwargs) -> keras.Model: ...

`get_model(name, **kwargs)` calls the builder; `list_models()` lists the names.
Registering a name twice raises; an unknown name raises `ValueError` naming the
closest registered names.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

TASKS = ("semantic", "instance")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one model.

    Attributes:
        name: registry name (`segzoo train NAME`).
        builder: callable(**kwargs) -> keras.Model.
        task: "semantic" (logits [B, H, W, K]) or "instance" (detection dict).
        description: one line for `segzoo list`.
        default_kwargs: keyword arguments `segzoo list` uses to count parameters
            at the default configuration.
    """

    name: str
    builder: Callable
    task: str
    description: str = ""
    default_kwargs: dict = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, task: str, description: str = "", default_kwargs=None):
    """Decorator registering `builder` under `name`.

    Raises:
        ValueError: the name is already registered, or `task` is unknown.
    """
    if task not in TASKS:
        raise ValueError(f"register_model({name!r}): task must be one of {TASKS}, got {task!r}")

    def decorator(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(
                f"A model named {name!r} is already registered "
                f"(by {_REGISTRY[name].builder.__module__}); choose another name."
            )
        _REGISTRY[name] = ModelSpec(name, builder, task, description, dict(default_kwargs or {}))
        return builder

    return decorator


def _ensure_builtin_models_registered() -> None:
    # The built-in models register on import of segzoo.models.
    import segzoo.models  # noqa: F401


def get_model_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of a registered name; unknown names raise `ValueError`."""
    _ensure_builtin_models_registered()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name]


def get_model(name: str, **kwargs):
    """Builds the registered model `name` with constructor keyword arguments."""
    return get_model_spec(name).builder(**kwargs)


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    _ensure_builtin_models_registered()
    return sorted(_REGISTRY)

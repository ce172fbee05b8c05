"""The configuration: one TOML file parsed strictly into typed, frozen models.

- ``types``: roles, impacts, names, ages, the strict model base;
- ``secrets``: values that mask themselves (``Secret``, ``SecretUrl``, ``mask_secrets``);
- ``windows``: maintenance-window syntax and arithmetic (pure);
- ``targets``: one model per kind of thing maintd maintains;
- ``model``: the sections and ``Config``;
- ``load``: reading, ``${ENV}`` interpolation, ``*_file`` secrets, errors as ``file:line: field: problem``.

Nothing here imports Celery, a task module or a door to an external system.
"""

from __future__ import annotations

from workers.config.load import (
    ENV_VAR,
    GENERATED,
    check_task_names,
    config_path,
    get_config,
    load_config,
    located_error,
    parse_config,
    reset_config,
    this_host,
)
from workers.config.model import *  # noqa: F403 - the models are this package's vocabulary
from workers.config.model import __all__ as _model_names

__all__ = [
    "ENV_VAR", "GENERATED", "check_task_names", "config_path", "get_config", "load_config", "located_error",
    "parse_config",
    "reset_config", "this_host", *_model_names,
]

"""
Apache Airflow provider for RunComfy's Model API.

This module is imported by Airflow's providers manager on every process start and by every DAG
file that uses the provider, so it imports nothing heavy: the version, and ``get_provider_info()``,
which reads ``provider.yaml`` (shipped beside this file) only when first called, then keeps it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

#: The provider's one description; see the comment at its top.
PROVIDER_YAML = Path(__file__).with_name("provider.yaml")


@functools.cache
def _provider_yaml() -> dict[str, Any]:
    """
    ``provider.yaml`` parsed once per process.

    PyYAML is a dependency of Airflow itself; its C loader (libyaml) parses this file in about a
    millisecond, the pure-Python one in a few, and either happens once, when the providers manager
    or the hook first asks, never while a DAG file is parsed.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with PROVIDER_YAML.open(encoding="utf-8") as stream:
        data = yaml.load(stream, Loader=loader)
    if not isinstance(data, dict):
        raise TypeError(f"{PROVIDER_YAML} must hold a mapping, got {type(data).__name__}")
    return data


def get_provider_info() -> dict[str, Any]:
    """
    Describe the provider to Airflow's providers manager (the ``apache_airflow_provider`` entry point).

    The content of ``provider.yaml`` plus ``versions`` from ``__version__``. A fresh copy each call,
    so a caller that edits the dict cannot change what the next caller sees.
    """
    import copy

    return {**copy.deepcopy(_provider_yaml()), "versions": [__version__]}


def connection_type_info() -> dict[str, Any]:
    """The ``runcomfy`` entry of ``connection-types`` (conn-fields and ui-field-behaviour), a fresh copy."""
    (conn_type,) = get_provider_info()["connection-types"]
    return dict(conn_type)


def conn_fields() -> dict[str, dict[str, Any]]:
    """The extra keys of a ``runcomfy`` connection as form fields (``conn-fields``)."""
    return dict(connection_type_info()["conn-fields"])


def ui_field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` in the snake_case keys of ``BaseHook.get_ui_field_behaviour()``."""
    behaviour = connection_type_info()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def __getattr__(name: str) -> Any:
    """
    ``CONN_FIELDS`` and ``UI_FIELD_BEHAVIOUR``, derived from ``provider.yaml`` on first use.

    Kept for users who imported them; computed lazily (PEP 562) so importing the package never
    parses YAML.
    """
    if name == "CONN_FIELDS":
        return conn_fields()
    if name == "UI_FIELD_BEHAVIOUR":
        return ui_field_behaviour()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""
Apache Airflow provider for RunComfy's Model API.

This module is imported by Airflow's providers manager on every process start and by every DAG
file that uses the provider, so it imports nothing heavy: the version and the provider metadata.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: The extra keys of a ``runcomfy`` connection, shown as form fields by Airflow 3.2+ (``conn-fields``).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of a status, result or cancel call after a transient error (not a submit).",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
    },
    "retry_backoff": {
        "label": "Retry backoff (s)",
        "description": "First retry delay in seconds; it doubles on each retry, with jitter.",
        "schema": {"type": ["number", "null"], "default": 1.0, "minimum": 0},
    },
    "retry_max_delay": {
        "label": "Retry max delay (s)",
        "description": "Longest single wait between retries, Retry-After included.",
        "schema": {"type": ["number", "null"], "default": 60.0, "minimum": 0},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "default": 10.0, "minimum": 0},
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "default": 60.0, "minimum": 0},
    },
}

#: How Airflow's connection form shows a ``runcomfy`` connection (both the provider info and the hook).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login", "port"],
    "relabeling": {"host": "API base URL", "password": "API token"},
    "placeholders": {
        "host": "https://model-api.runcomfy.net",
        "password": "your RunComfy API token",
        "extra": '{"max_retries": 5, "retry_backoff": 1.0}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's providers manager (the ``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-provider-runcomfy",
        "name": "RunComfy",
        "description": "Run RunComfy generative models (Dreamina image edit, image to video, any model).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "RunComfy",
                "external-doc-url": "https://www.runcomfy.com/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "RunComfy",
                "python-modules": ["airflow_provider_runcomfy.hooks.runcomfy"],
            }
        ],
        "operators": [
            {
                "integration-name": "RunComfy",
                "python-modules": ["airflow_provider_runcomfy.operators.runcomfy"],
            }
        ],
        "sensors": [
            {
                "integration-name": "RunComfy",
                "python-modules": ["airflow_provider_runcomfy.sensors.runcomfy"],
            }
        ],
        "triggers": [
            {
                "integration-name": "RunComfy",
                "python-modules": ["airflow_provider_runcomfy.triggers.runcomfy"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "runcomfy",
                "hook-class-name": "airflow_provider_runcomfy.hooks.runcomfy.RunComfyHook",
                "hook-name": "RunComfy",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
            }
        ],
    }

"""Test your own RunComfy DAGs offline: a pytest plugin and the helpers behind it.

Installed with the provider, the plugin (``airflow_provider_runcomfy.testing.plugin``, registered
under the ``pytest11`` entry point ``runcomfy``) gives every pytest run two fixtures:

- ``runcomfy_emulator``: a ``RunComfyEmulator`` on 127.0.0.1, with ``AIRFLOW_CONN_RUNCOMFY_DEFAULT``
  pointing at it, stopped after the test;
- ``runcomfy_dag_test``: ``run_dag`` below, which runs a DAG object or a DAG file with ``dag.test()``
  the same way on Airflow 3.3 and 2.11.

The helpers are importable without pytest (``scripts/demo.py`` and this project's own suite use
them), and this module imports nothing heavy: Airflow is imported only when a helper is called.
"""

from __future__ import annotations

from .airflow_env import isolated_airflow_env
from .dags import load_dags, run_dag, task_states, xcoms

__all__ = ["isolated_airflow_env", "load_dags", "run_dag", "task_states", "xcoms"]

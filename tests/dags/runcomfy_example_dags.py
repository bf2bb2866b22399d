"""
The example DAGs that the suite runs end to end against the emulator, defined from this file.

Airflow 3's ``dag.test()`` only runs a DAG whose file is inside the DAGs folder (``tests/dags``), so
each example file's source is compiled here under this file's name: the DAG is the example's own
code, unchanged, and Airflow finds it where it looks.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
#: The examples run by tests/test_cost.py (others are only imported by tests/test_provider.py).
RUN_IN_TESTS = ("runcomfy_cost_report.py",)

for _name in RUN_IN_TESTS:
    _source = (EXAMPLES / _name).read_text(encoding="utf-8")
    exec(compile(_source, __file__, "exec"), globals())  # the repository's own example, unchanged

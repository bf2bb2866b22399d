"""The hostname each soak process reports to Airflow (``[core] hostname_callable``).

Two triggerers on one machine would otherwise share a hostname, and the soak could not tell from the
metadata database which of them holds a trigger. Each process gets ``RUNCOMFY_SOAK_HOSTNAME`` in its
environment; Airflow stores it in the ``job`` table.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """This process's soak name (``triggerer-1``...), else the machine's name."""
    return os.environ.get("RUNCOMFY_SOAK_HOSTNAME") or socket.getfqdn()

"""
The soak: a production-shaped Airflow 3.3 deployment (PostgreSQL, two triggerers, LocalExecutor or
Celery workers) running a fan-out of RunComfy jobs against a misbehaving emulator while its processes
are killed, and counting what was paid, lost or paid twice. Run it with ``scripts/soak``.
"""

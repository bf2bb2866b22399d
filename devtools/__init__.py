"""
Development tooling shared by the tests, the benchmarks and the scripts: processes they start and stop
(the emulator in its own process, a real Airflow deployment). Not part of the provider: the wheel
ships only ``airflow_provider_runcomfy``.
"""

"""The benchmarks behind ``BENCHMARKS.md``: run them all with ``scripts/bench`` (see ``__main__``)."""

"""ByteLeap's benchmarks.

Each ``bench/<name>.py`` is a script that prints its own figures and, with ``--json PATH``, writes
them as JSON. ``python -m bench`` (``bench/run_all.py``) runs them all, each in its own process,
and writes ``docs/benchmarks.md`` from their JSON and the prose in ``bench/templates/``.
"""

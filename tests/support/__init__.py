"""Plain helpers the tests share: constants, the CLI in a subprocess, a contest server, a registry,
Docker, PostgreSQL and the scheduler in-process.

Fixtures live in the ``conftest.py`` of their area and hand these out; a test that needs a class or a
constant (not a fixture) imports it from here, never from a ``conftest.py``.
"""

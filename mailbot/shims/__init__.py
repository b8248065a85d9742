"""The private APIs of libraries that mailbot cannot do without, one module per library.

Each module holds all of mailbot's use of that library's internals and says why no public API
does the job; tests/test_shims.py checks those internals against the installed release (a new
release that changes them fails there, not in production), and pyproject.toml bounds each of
these libraries to the major version checked.
"""

"""Benchmarks of mictlanx-sync (never run as tests): ``python -m benchmarks [--quick]``.

See ``benchmarks/README.md`` for what each figure means.
"""

"""Benchmarks for peerdesk: ``python -m bench`` from the repository root.

Each figure is measured against a baseline taken in the same run (the library floor the
program stands on), because the machines that run it are shared and noisy: the ratio is
the figure to read, not the absolute time. See ``docs/benchmarks.md``.

This folder is a support tool, not part of the installed program: nothing in ``bot``,
``console`` or ``knowledge_base`` imports it.
"""

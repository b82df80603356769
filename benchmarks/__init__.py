"""Benchmarks of jupyter_colab_tunnel against real `jupyter server` processes.

Run from the repository root: ``python -m benchmarks [--quick] [--json PATH]``. Every figure is
measured next to a baseline taken in the same run; see docs/performance.md.

The package imports nothing heavy at import time: server processes import
``benchmarks.bench_nvml`` to patch NVML, and that must stay cheap.
"""

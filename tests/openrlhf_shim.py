"""Make OpenRLHF importable on a machine without flash-attn (CPU): tests call `use()` before
importing `openrlhf.models`."""

import importlib.util
import sys
from pathlib import Path

SHIMS = Path(__file__).parent / "shims"


def use() -> None:
    """Put the plain-torch flash-attn stand-in first on the path, unless the real one is here."""
    if importlib.util.find_spec("flash_attn") is None and str(SHIMS) not in sys.path:
        sys.path.insert(0, str(SHIMS))

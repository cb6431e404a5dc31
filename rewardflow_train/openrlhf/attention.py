"""OpenRLHF without flash-attn: sdpa attention, no sample packing, and a plain-torch stand-in
for the flash-attn helpers OpenRLHF imports.

OpenRLHF 0.11.2 requires flash-attn 2.8.3, which has no wheel for the torch its vLLM needs
(a source build needs nvcc and one to two hours), defaults to ``flash_attention_2`` and packs
samples only with it. Where flash-attn is installed nothing here changes anything.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rewardflow_train.config import ConfigError

# The sys.path entry that holds the stand-in `flash_attn` package.
STAND_IN_PATH = str(Path(__file__).with_name("no_flash_attn"))
ATTENTION_FLAG = "ds.attn_implementation"
PACKING_FLAG = "ds.packing_samples"


def flash_attn_installed() -> bool:
    """Whether the real flash-attn is installed (the stand-in has no package metadata)."""
    try:
        version("flash-attn")
    except PackageNotFoundError:
        return False
    return True


def use_stand_in_if_missing() -> None:
    """Make ``import flash_attn`` find the stand-in, unless flash-attn is installed.

    Call before anything imports ``openrlhf.models``."""
    if not flash_attn_installed() and STAND_IN_PATH not in sys.path:
        sys.path.insert(0, STAND_IN_PATH)


def attention_flags(flags: dict[str, Any], flash_attn: bool) -> list[str]:
    """Turn `flags` (``train_ppo_ray`` flags) to sdpa and no packing when flash-attn is missing;
    returns what was changed, to tell the user. A flash attention the user named is refused."""
    if flash_attn:
        return []
    named = flags.get(ATTENTION_FLAG)
    if named is not None and "flash" in str(named):
        raise ConfigError(
            f"--{ATTENTION_FLAG} {named} needs flash-attn, which is not installed: install it "
            "(pip install flash-attn --no-build-isolation, a CUDA build) or set "
            f"--{ATTENTION_FLAG} sdpa"
        )
    changes = []
    if named is None:
        flags[ATTENTION_FLAG] = "sdpa"
        changes.append(f"--{ATTENTION_FLAG} sdpa (OpenRLHF's default is flash_attention_2)")
    if flags.pop(PACKING_FLAG, False):
        changes.append(f"no --{PACKING_FLAG} (packing needs flash attention)")
    return changes

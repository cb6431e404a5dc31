"""A stand-in, in plain torch, for the parts of flash-attn that OpenRLHF 0.11.2 imports.

OpenRLHF imports flash-attn's padding helpers and ``all_gather`` at module level
(``openrlhf/models/ring_attn_utils.py``), though it calls them only to pack samples. flash-attn
has no wheel for the torch that vLLM needs, so where it is not installed
`rewardflow_train.openrlhf.attention` puts this folder's parent on ``sys.path`` and trains with
sdpa attention and no packing. It carries no package metadata: transformers still sees that
flash-attn is not installed.
"""

__version__ = "0.0.0+rewardflow-stand-in"

"""flash_attn.bert_padding's unpadding helpers (same signatures and results), plain torch."""

import torch
import torch.nn.functional as F
from einops import rearrange  # noqa: F401  (flash_attn.bert_padding re-exports it)


def index_first_axis(tensor, indices):
    """The rows `indices` of `tensor` along its first axis."""
    return tensor[indices]


def unpad_input(hidden_states, attention_mask, unused_mask=None):
    """Keep the tokens the mask selects: (tokens, indices, cu_seqlens, max_seqlen, seqused)."""
    all_masks = attention_mask + unused_mask if unused_mask is not None else attention_mask
    seqlens = all_masks.sum(dim=-1, dtype=torch.int32)
    used_seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(all_masks.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max().item())
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen, used_seqlens


def pad_input(hidden_states, indices, batch, seqlen):
    """Scatter unpadded tokens back to (batch, seqlen, ...), zeros elsewhere."""
    output = hidden_states.new_zeros((batch * seqlen, *hidden_states.shape[1:]))
    output[indices] = hidden_states
    return output.reshape(batch, seqlen, *hidden_states.shape[1:])

"""The plain-torch flash-attn stand-in that lets OpenRLHF import on CPU behaves as flash-attn's
own helpers do: unpadding keeps exactly the masked tokens and padding puts them back."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("einops")

import openrlhf_shim  # noqa: E402

openrlhf_shim.use()
from flash_attn.bert_padding import index_first_axis, pad_input, unpad_input  # noqa: E402


def test_unpad_then_pad_round_trips_the_masked_tokens():
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    tokens, indices, cu_seqlens, max_seqlen, used = unpad_input(hidden, mask)
    assert tokens.shape == (9, 4)
    assert cu_seqlens.tolist() == [0, 3, 8, 9] and max_seqlen == 5 and used.tolist() == [3, 5, 1]
    assert torch.equal(tokens[3:8], hidden[1])
    restored = pad_input(tokens, indices, 3, 5)
    assert torch.equal(restored, hidden * mask.unsqueeze(-1))
    assert torch.equal(index_first_axis(hidden.reshape(15, 4), indices), tokens)

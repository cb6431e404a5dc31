"""OpenRLHF without flash-attn, as the docs install it: the launcher trains with sdpa attention
and no sample packing, and a plain-torch stand-in serves the flash-attn helpers that OpenRLHF
imports, behaving as flash-attn's own do, while transformers still sees no flash-attn."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from rewardflow_train.config import ConfigError  # noqa: E402
from rewardflow_train.openrlhf import attention, launcher  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples/configs/openrlhf/alfworld_1.5b.yaml"


def argv_flags(argv: list[str]) -> dict[str, str | bool]:
    flags, name = {}, None
    for token in argv:
        if token.startswith("--"):
            name = token[2:]
            flags[name] = True
        else:
            flags[name] = token
    return flags


def test_without_flash_attn_the_launcher_trains_with_sdpa_and_without_packing(tmp_path):
    run, _ = launcher.plan(["--config", str(EXAMPLE), f"output_dir={tmp_path}"], flash_attn=False)
    flags = argv_flags(run.argv)
    assert flags["ds.attn_implementation"] == "sdpa"
    assert "ds.packing_samples" not in flags
    assert len(run.changes) == 2


def test_with_flash_attn_the_config_is_left_as_it_is(tmp_path):
    run, _ = launcher.plan(["--config", str(EXAMPLE), f"output_dir={tmp_path}"], flash_attn=True)
    flags = argv_flags(run.argv)
    assert flags["ds.packing_samples"] is True and "ds.attn_implementation" not in flags
    assert run.changes == []


def test_a_flash_attention_the_user_names_is_refused_without_flash_attn(tmp_path):
    argv = ["--config", str(EXAMPLE), f"output_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="needs flash-attn, which is not installed"):
        launcher.plan([*argv, "--ds.attn_implementation", "flash_attention_2"], flash_attn=False)
    run, _ = launcher.plan([*argv, "--ds.attn_implementation", "eager"], flash_attn=False)
    assert argv_flags(run.argv)["ds.attn_implementation"] == "eager"


def test_the_launcher_says_what_it_changed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launcher, "flash_attn_installed", lambda: False)
    assert launcher.main(["--config", str(EXAMPLE), f"output_dir={tmp_path}", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "flash-attn is not installed: training with --ds.attn_implementation sdpa" in err
    assert "--ds.attn_implementation sdpa" in out and "packing" not in out


def test_the_stand_in_is_found_only_where_flash_attn_is_missing(monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != attention.STAND_IN_PATH])
    monkeypatch.setattr(attention, "flash_attn_installed", lambda: True)
    attention.use_stand_in_if_missing()
    assert attention.STAND_IN_PATH not in sys.path
    monkeypatch.setattr(attention, "flash_attn_installed", lambda: False)
    attention.use_stand_in_if_missing()
    attention.use_stand_in_if_missing()
    assert sys.path.count(attention.STAND_IN_PATH) == 1
    spec = importlib.util.find_spec("flash_attn.bert_padding")
    assert spec.origin.startswith(attention.STAND_IN_PATH)


def test_transformers_sees_no_flash_attn_in_the_stand_in(monkeypatch):
    pytest.importorskip("transformers")
    from transformers.utils import is_flash_attn_2_available

    if attention.flash_attn_installed():
        pytest.skip("flash-attn is installed here")
    monkeypatch.syspath_prepend(attention.STAND_IN_PATH)
    assert importlib.util.find_spec("flash_attn") is not None
    assert not is_flash_attn_2_available()


def test_unpad_then_pad_round_trips_the_masked_tokens(monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("einops")
    monkeypatch.syspath_prepend(attention.STAND_IN_PATH)
    from flash_attn.bert_padding import index_first_axis, pad_input, unpad_input

    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    tokens, indices, cu_seqlens, max_seqlen, used = unpad_input(hidden, mask)
    assert tokens.shape == (9, 4)
    assert cu_seqlens.tolist() == [0, 3, 8, 9] and max_seqlen == 5 and used.tolist() == [3, 5, 1]
    assert torch.equal(tokens[3:8], hidden[1])
    restored = pad_input(tokens, indices, 3, 5)
    assert torch.equal(restored, hidden * mask.unsqueeze(-1))
    assert torch.equal(index_first_axis(hidden.reshape(15, 4), indices), tokens)

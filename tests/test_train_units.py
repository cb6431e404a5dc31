"""Trainer pieces in one process: losses, batching, advantages, the tiny model and generation."""

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardflow_train.advantage import (  # noqa: E402
    signal_counts,
    signal_rates,
    solve_group,
)
from rewardflow_train.config import AdvantageConfig, ConfigError, TinyModelConfig  # noqa: E402
from rewardflow_train.episode import Episode, Turn, encode_prompts, render_prompt  # noqa: E402
from rewardflow_train.rollout.collector import episode_metrics, finish_metrics  # noqa: E402
from rewardflow_train.rollout.generation import (  # noqa: E402
    ContextLengthError,
    HFGenerator,
    SamplingSettings,
    check_context,
    trim_response,
)
from rewardflow_train.runtime.models import (  # noqa: E402
    build_tiny_model,
    load_model,
    load_tokenizer,
    resolve_model_path,
    stop_token_ids,
)
from rewardflow_train.update.losses import (  # noqa: E402
    k3_kl,
    ppo_clip_loss,
    token_logprobs,
)
from rewardflow_train.update.ppo import Sample, collate, split, training_samples  # noqa: E402

pytestmark = pytest.mark.train


def test_ppo_clip_loss_matches_hand_computed_values():
    logprobs = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    old = torch.zeros(3)
    advantages = torch.tensor([1.0, -1.0, 2.0])
    loss, clipped = ppo_clip_loss(logprobs, old, advantages, 0.2, 0.2)
    # token 0: ratio 1.5 clipped to 1.2 -> -1.2; token 1: ratio 0.5 -> min(-0.5, -0.8) -> 0.8;
    # token 2: ratio 1, nothing to clip -> -2.
    assert loss.tolist() == pytest.approx([-1.2, 0.8, -2.0])
    assert clipped.tolist() == [True, True, False]


def test_ppo_gradient_raises_the_probability_of_positive_advantage_tokens():
    logits = torch.zeros((1, 2, 4), requires_grad=True)
    targets = torch.tensor([[1, 2]])
    logprobs = token_logprobs(logits, targets)
    loss, _ = ppo_clip_loss(logprobs, logprobs.detach(), torch.tensor([[1.0, -1.0]]), 0.2, 0.2)
    loss.sum().backward()
    assert logits.grad[0, 0, 1] < 0  # descending the loss raises the rewarded token
    assert logits.grad[0, 1, 2] > 0  # and lowers the penalised one


def test_token_logprobs_equal_log_softmax_with_temperature():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, targets, 0.7), expected, atol=1e-6)


def test_k3_kl_is_zero_for_equal_policies_and_positive_otherwise():
    logprobs = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.all(k3_kl(logprobs, logprobs) == 0)
    other = torch.tensor([-1.5, -1.0, -0.5])
    kl = k3_kl(logprobs, other)
    assert torch.all(kl[:2] > 0)
    assert kl[0].item() == pytest.approx(math.exp(-0.5) + 0.5 - 1)


def test_collate_marks_exactly_the_positions_that_predict_response_tokens():
    samples = [Sample([5, 6, 7], [8, 9], advantage=2.0), Sample([5], [4, 3, 2], advantage=-1.0)]
    batch = collate(samples, pad_id=0, device="cpu")
    assert batch.prompts is None
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [0, 5, 4, 3, 2]]
    assert batch.position_ids[1, 1:].tolist() == [0, 1, 2, 3]  # left padding takes no position
    # Position t predicts token t+1: each response token is read from the position before it,
    # among the last `keep` columns.
    first_kept = batch.input_ids.shape[1] - batch.keep
    predicted = batch.input_ids[batch.rows, first_kept + batch.columns + 1]
    assert predicted.tolist() == batch.targets.tolist() == [8, 9, 4, 3, 2]
    assert batch.advantages.tolist() == [2, 2, -1, -1, -1]
    assert batch.lengths == [2, 3]


def test_split_keeps_order_and_every_item():
    parts = split(list(range(7)), 3)
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 3) == [[1], [], []]


def episode(states, rewards, valid=None, won=False):
    valid = valid or [True] * len(rewards)
    turns = [Turn([1, 2], [3, 4 + i], v) for i, v in enumerate(valid)]
    return Episode(0, states, rewards, turns, won=won)


def samples_of(groups, config):
    """The training samples of a step, as the trainer makes them."""
    return training_samples(groups, [solve_group(group, config) for group in groups])


def test_advantages_favour_the_winning_episode_and_cover_each_step():
    group = [
        episode(["a", "b", "win"], [0.0, 1.0], won=True),
        episode(["a", "c", "c"], [0.0, 0.0]),
    ]
    samples = samples_of([group], AdvantageConfig(estimator="rewardflow"))
    assert len(samples) == 4
    winner, loser = samples[:2], samples[2:]
    assert all(s.advantage > 0 for s in winner)
    assert all(s.advantage < 0 for s in loser)
    assert samples[0].response_ids == [3, 4]


def penalty_changes(mode: str) -> list[float]:
    group = [
        episode(["a", "a", "b"], [0.0, 0.0], valid=[False, True]),
        episode(["a", "b", "b"], [0.0, 0.0], valid=[True, True]),
    ]
    without = samples_of([group], AdvantageConfig(invalid_action_penalty=0.0))
    charged = AdvantageConfig(invalid_action_penalty=0.5, invalid_action_penalty_mode=mode)
    with_penalty = samples_of([group], charged)
    return [b.advantage - a.advantage for a, b in zip(without, with_penalty, strict=True)]


def test_invalid_action_penalty_on_the_advantage_lowers_exactly_the_invalid_steps():
    assert penalty_changes("advantage") == pytest.approx([-0.5, 0.0, 0.0, 0.0])


def test_invalid_action_penalty_on_the_reward_is_charged_before_centring_in_both_terms():
    # Episode scores: -0.25 (mean of 0.5 and 0) and 0, baseline -0.125; the invalid step's
    # own share is 0.5 - 0.25. Step signals from "a": -0.5, 0, 0 (mean -1/6); from "b": 0.
    episode_terms = [-0.125 - 0.25, -0.125 + 0.25, 0.125, 0.125]
    step_terms = [-0.5 + 1 / 6, 1 / 6, 1 / 6, 0.0]
    expected = [e + s for e, s in zip(episode_terms, step_terms, strict=True)]
    assert penalty_changes("reward") == pytest.approx(expected)


def test_signal_rates_count_mixed_groups_shared_anchors_and_step_terms():
    # gamma 0.9: V(win) = 1, V(b) = 0.9, V(a) = 0.81, V(c) = 0. Steps from "a" have dense
    # rewards 0.09, -0.81, 0.09 and from "b" 0.1, 0 (all differ from their anchor's mean);
    # the one step from "c" is alone. The second group's two failures share every anchor
    # but all their dense rewards are 0, and their returns are equal. Episode terms: +2/3,
    # -1/3, -1/3; step terms from "a": +0.3, -0.6, +0.3 (the third against its episode's
    # sign), from "b": +0.05, -0.05 (both with it).
    first = [
        episode(["a", "b", "win"], [0.0, 1.0], won=True),
        episode(["a", "c", "c"], [0.0, 0.0]),
        episode(["a", "b", "b"], [0.0, 0.0]),
    ]
    second = [episode(["x", "y"], [0.0]), episode(["x", "y"], [0.0])]
    counts = signal_counts([solve_group(g, AdvantageConfig(gamma=0.9)) for g in (first, second)])
    assert counts == {
        "groups": 2,
        "mixed_groups": 1,
        "steps": 8,
        "shared_anchor_steps": 7,
        "step_signal_steps": 5,
        "step_against_episode_steps": 1,
    }
    assert signal_rates(counts) == {
        "signal/mixed_groups": 0.5,
        "signal/shared_anchor_steps": 0.875,
        "signal/step_signal_steps": 0.625,
        "signal/step_against_episode_steps": 0.125,
    }


def test_episode_metrics_average_over_ranks_and_task_types():
    first = episode(["a", "b"], [1.0], won=True)
    first.task_type = "pick"
    second = episode(["a", "a", "a"], [0.0, 0.0], valid=[False, True])
    second.task_type = "heat"
    metrics = finish_metrics(episode_metrics([[first, second]], "eval"), "eval")
    assert metrics["eval/success"] == 0.5
    assert metrics["eval/return"] == 0.5
    assert metrics["eval/episode_length"] == 1.5
    assert metrics["eval/invalid_rate"] == pytest.approx(1 / 3)
    assert metrics["eval/success/pick"] == 1.0 and metrics["eval/success/heat"] == 0.0


CORPUS = [
    "<|user|>\nYou are in a grid. Answer with <action>up</action>.<|end|>\n"
    "<|assistant|>\n<action>up</action><|end|>\n"
] * 20


TINY_MODEL = TinyModelConfig(
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    vocab_size=300,
    context_length=96,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    return build_tiny_model(TINY_MODEL, CORPUS, seed=0, out_dir=out)


def test_tiny_model_is_a_normal_hf_directory_with_a_chat_template(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    model = load_model(tiny_dir, torch.float32)
    assert sum(p.numel() for p in model.parameters()) < 100_000
    text = render_prompt(tokenizer, "Where now?", "Be brief.")
    assert text == "<|system|>\nBe brief.<|end|>\n<|user|>\nWhere now?<|end|>\n<|assistant|>\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids("<|end|>") == tokenizer.eos_token_id


def test_tiny_model_weights_depend_only_on_the_seed(tiny_dir, tmp_path):
    again = build_tiny_model(TINY_MODEL, CORPUS, seed=0, out_dir=tmp_path / "again")
    first, second = load_model(tiny_dir, torch.float32), load_model(again, torch.float32)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def hub_cache_with(model_dir: Path, cache: Path, repo_id: str) -> Path:
    """An HF hub cache holding `model_dir` as the snapshot of `repo_id`, as a download leaves it."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_a_hub_id_loads_from_the_hf_cache(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = hub_cache_with(tiny_dir, tmp_path / "hub", "acme/tiny-agent")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_path("acme/tiny-agent") == snapshot
    assert load_tokenizer(resolve_model_path("acme/tiny-agent")).eos_token == "<|end|>"


def test_a_hub_id_that_cannot_be_fetched_is_named_with_the_offline_switch(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as error:
        resolve_model_path("Qwen/Qwen2.5-1.5B-Instruct")
    message = str(error.value)
    assert "'Qwen/Qwen2.5-1.5B-Instruct' is not a local directory" in message
    assert "HF_HUB_OFFLINE is set" in message


@pytest.mark.parametrize("path", ["./models/tiny", "/models/tiny", "runs/a/model"])
def test_a_missing_local_path_is_not_taken_for_a_hub_id(path):
    with pytest.raises(ConfigError, match=f"model.path '{path}' does not exist"):
        resolve_model_path(path)


def test_hf_generation_left_pads_and_ends_responses_at_eos(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    model = load_model(tiny_dir, torch.float32)
    stop_ids = [tokenizer.eos_token_id]
    generator = HFGenerator(model, tokenizer, stop_ids, 96, batch_size=2, device="cpu")
    prompts = [
        tokenizer(render_prompt(tokenizer, p, None), add_special_tokens=False)["input_ids"]
        for p in ("a", "a much longer prompt than the first", "b")
    ]
    greedy = SamplingSettings(max_new_tokens=6, temperature=1.0, top_p=1.0, greedy=True)
    responses = generator.generate(prompts, greedy)
    assert len(responses) == 3
    for response in responses:
        assert 1 <= len(response) <= 6
        assert tokenizer.eos_token_id not in response[:-1]
    # Padding must not change what a prompt produces: alone, it gives the same response.
    assert generator.generate(prompts[:1], greedy) == responses[:1]


def test_generation_also_stops_at_the_eos_ids_of_the_models_generation_config(tiny_dir):
    """Instruction-tuned models list several end tokens in generation_config.json (e.g.
    <|im_end|> and <|endoftext|>); HF generation must stop at each of them, as vLLM does."""
    tokenizer = load_tokenizer(tiny_dir)
    model = load_model(tiny_dir, torch.float32)
    prompt = tokenizer(render_prompt(tokenizer, "a", None), add_special_tokens=False)["input_ids"]
    greedy = SamplingSettings(max_new_tokens=6, temperature=1.0, top_p=1.0, greedy=True)
    plain = HFGenerator(model, tokenizer, stop_token_ids(model, tokenizer), 96, 2, "cpu")
    first = plain.generate([prompt], greedy)[0][0]
    assert first != tokenizer.eos_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, first]
    assert stop_token_ids(model, tokenizer) == [tokenizer.eos_token_id, first]
    ending = HFGenerator(model, tokenizer, stop_token_ids(model, tokenizer), 96, 2, "cpu")
    assert ending.generate([prompt], greedy) == [[first]]


def test_an_empty_turn_encodes_to_no_prompts(tiny_dir):
    """Under ZeRO-3 a rank whose episodes have all ended still takes part in every turn."""
    assert encode_prompts(load_tokenizer(tiny_dir), [], None) == []


def test_a_prompt_that_does_not_fit_the_context_is_a_clear_error():
    with pytest.raises(ContextLengthError, match="exceeds the 96 tokens a turn may take"):
        check_context([[1] * 90], max_new_tokens=10, context=96)


def test_a_turn_takes_the_prompt_and_response_budgets_not_a_long_models_whole_context():
    from rewardflow_train.rollout.generation import turn_context

    # Llama-3.1-8B's 131,072 positions do not fit vLLM's KV cache once at 30% of a GPU.
    assert turn_context(131_072, max_prompt_tokens=4096, max_new_tokens=512) == 4608
    assert turn_context(512, max_prompt_tokens=4096, max_new_tokens=12) == 512


def test_trim_response_keeps_eos_and_drops_padding():
    assert trim_response([4, 5, 2, 0, 0], stop_ids=[2], pad_id=0) == [4, 5, 2]
    assert trim_response([4, 5, 0, 0], stop_ids=[2], pad_id=0) == [4, 5]
    assert trim_response([4, 7, 5, 2], stop_ids=[2, 7], pad_id=0) == [4, 7]


def test_plot_command_writes_a_png_of_the_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import json

    from rewardflow_train.plot import main as plot_main

    lines = [{"kind": "eval", "step": 0, "eval/success": 0.1, "eval/return": -1.0}]
    lines += [
        {"kind": "train", "step": s, "train/success": s / 10, "train/return": s - 1.0}
        for s in range(1, 4)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert plot_main([str(tmp_path)]) == 0
    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == str(png)


def test_plot_command_reports_a_run_without_metrics(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rewardflow_train.plot import main as plot_main

    assert plot_main([str(tmp_path)]) == 2
    assert "has no train or eval records" in capsys.readouterr().err


def test_weight_sync_buckets_hold_whole_decoder_layers(tiny_dir):
    """vLLM fuses q/k/v and gate/up projections: a layer must reach it whole in one call."""
    from rewardflow_train.rollout.vllm_engine import layer_of, weight_buckets

    model = load_model(tiny_dir, torch.float32)
    assert layer_of("model.layers.12.self_attn.q_proj.weight") == "model.layers.12"
    assert layer_of("model.embed_tokens.weight") == "model.embed_tokens"
    one_per_call = weight_buckets(model, bucket_bytes=1)
    for bucket in one_per_call:
        assert len({layer_of(name) for name, _ in bucket}) == 1
    layers = [n for n, _ in model.named_parameters() if n.startswith("model.layers.0.")]
    assert [n for n, _ in one_per_call[1]] == layers  # all 9 tensors of layer 0 together
    everything = weight_buckets(model, bucket_bytes=2**30)
    assert len(everything) == 1
    assert [n for n, _ in everything[0]] == [n for n, _ in model.named_parameters()]


def test_evaluation_samples_at_its_own_temperature_and_top_p_when_set():
    from rewardflow_train.config import load_config
    from rewardflow_train.rollout.generation import SamplingSettings
    from rewardflow_train.trainer import eval_sampling_settings

    config_file = Path(__file__).resolve().parent.parent / "examples/configs/sokoban_cpu.yaml"
    rollout = SamplingSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, greedy=False)
    own = load_config(config_file, ["eval.greedy=false", "eval.temperature=0.4", "eval.top_p=1"])
    assert eval_sampling_settings(own, rollout) == SamplingSettings(8, 0.4, 1.0, False)
    inherited = load_config(config_file, ["eval.greedy=true"])
    assert eval_sampling_settings(inherited, rollout) == SamplingSettings(8, 1.0, 0.9, True)


def test_sampling_ignores_the_checkpoints_own_generation_settings(tiny_dir):
    """A checkpoint's generation_config.json (repetition_penalty, no_repeat_ngram_size, top_k,
    ...) must not change what the rollouts sample: the log-probs the PPO ratio uses are the
    plain softmax / temperature."""
    tokenizer = load_tokenizer(tiny_dir)
    prompt = tokenizer(render_prompt(tokenizer, "a b a b", None), add_special_tokens=False)
    prompts = [prompt["input_ids"]] * 3
    outputs = []
    for settings in ({}, {"repetition_penalty": 2.0, "no_repeat_ngram_size": 1, "top_k": 1}):
        model = load_model(tiny_dir, torch.float32)
        for name, value in settings.items():
            setattr(model.generation_config, name, value)
        generator = HFGenerator(model, tokenizer, stop_token_ids(model, tokenizer), 96, 3, "cpu")
        sampled = []
        for greedy in (True, False):
            torch.manual_seed(0)
            sampling = SamplingSettings(
                max_new_tokens=12, temperature=1.0, top_p=1.0, greedy=greedy
            )
            sampled.append(generator.generate(prompts, sampling))
        outputs.append(sampled)
        # The checkpoint's own settings are left as they were (they are exported with it).
        assert all(getattr(model.generation_config, k) == v for k, v in settings.items())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("installed", "problem"),
    [("0.31.2", "needs vLLM >= 0.32 (its worker API for weight syncs), found vllm 0.31.2"),
     ("0.32.0+cpu", None), ("0.33.0rc1", None)],
)  # fmt: skip
def test_an_old_vllm_is_named_before_any_engine_starts(monkeypatch, installed, problem):
    import importlib.metadata
    import importlib.util

    from rewardflow_train.rollout import generation

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed)
    found = generation.vllm_problem()
    assert found == problem or (problem and problem in found)


@pytest.mark.parametrize("level", [None, 1])
def test_vllm_sleeps_at_level_2_unless_told_otherwise(level):
    """Level 2 discards the weights the next sync overwrites anyway; level 1 would copy them to
    pinned host memory and back every step."""
    from rewardflow_train.config import VLLMConfig
    from rewardflow_train.rollout.vllm_engine import VLLMGenerator

    class Engine:
        def sleep(self, level):
            self.level = level

    config = VLLMConfig(enable_sleep_mode=True, **({} if level is None else {"sleep_level": level}))
    generator = object.__new__(VLLMGenerator)  # the engine itself needs vLLM and a GPU
    generator.llm, generator.asleep = Engine(), False
    generator.sleep_enabled, generator.sleep_level = config.enable_sleep_mode, config.sleep_level
    generator.sleep()
    assert generator.llm.level == (level or 2) and generator.asleep


def labelled(states, rewards, labels):
    played = episode(states, rewards)
    for turn, label in zip(played.turns, labels, strict=True):
        turn.label = label
    return played


def test_the_credit_audit_scores_every_estimator_against_the_oracles_labels():
    from rewardflow_train.advantage import credit_rates, credit_sums

    # Two groups: the moves towards the win are good (+1), the others bad (-1); the step from
    # "a" to "c" is the bad choice from a state both episodes started in.
    groups = [
        [
            labelled(["a", "b", "win"], [0.0, 1.0], [1, 1]),
            labelled(["a", "c", "c"], [0.0, 0.0], [-1, -1]),
        ],
        [
            labelled(["a", "b", "b"], [0.0, 0.0], [1, -1]),
            labelled(["a", "b", "win"], [0.0, 1.0], [1, 1]),
        ],
    ]
    totals = credit_sums(groups, AdvantageConfig(invalid_action_penalty=0.0))
    assert totals["grpo/steps"] == 8 and totals["grpo/labelled"] == 8
    rates = credit_rates(totals)
    assert set(rates) == {
        f"credit/{e}/{m}"
        for e in ("rewardflow", "gigpo", "grpo", "rloo")
        for m in ("correlation", "sign_agreement")
    }
    assert all(rates[f"credit/{e}/correlation"] > 0.5 for e in ("rewardflow", "grpo"))
    # GRPO gives every move of an episode the same advantage; RewardFlow's step term also
    # ranks the two moves taken from "a" in the first group (to "b" above, to "c" below).
    assert rates["credit/rewardflow/correlation"] > rates["credit/grpo/correlation"]
    assert rates["credit/grpo/correlation"] == pytest.approx(rates["credit/rloo/correlation"])


class Answer:
    """A generation backend that answers every prompt at once with the same text."""

    def __init__(self, tokenizer, text):
        self.ids = tokenizer(text)["input_ids"]

    def generate(self, prompts, sampling):
        return [list(self.ids) for _ in prompts]


GREEDY = SamplingSettings(max_new_tokens=4, temperature=1.0, top_p=1.0, greedy=True)


def test_an_evaluation_by_task_index_plays_those_entries_of_the_split(tiny_dir):
    """task_index: the task seeds are indexes into the env's task list."""
    import gymnasium

    from rewardflow_envs.group import GroupEnv
    from rewardflow_train.rollout.collector import RolloutCollector

    tokenizer = load_tokenizer(tiny_dir)
    collector = RolloutCollector(
        lambda size: GroupEnv("RF-Search-v0", size, split="test"),
        tokenizer, Answer(tokenizer, "<answer>x</answer>"), None, None, lockstep=False,
        task_index=True,
    )  # fmt: skip
    groups = collector.collect([0, 5], 1, GREEDY)
    collector.close()
    questions = gymnasium.make("RF-Search-v0", split="test").unwrapped.questions
    assert [group[0].task_seed for group in groups] == [0, 5]
    assert [group[0].task_type for group in groups] == [
        questions[0].task_type,
        questions[5].task_type,
    ]


def test_a_rollout_takes_its_states_and_rewards_from_the_group_envs_record(tiny_dir):
    from rewardflow_envs.group import GroupEnv
    from rewardflow_train.rollout.collector import RolloutCollector

    made = []

    def make_group(size):
        room = {"dim_room": (5, 5), "num_boxes": 1, "generator": "bounded"}
        made.append(GroupEnv("RF-Sokoban-v0", size, max_steps=3, **room))
        return made[-1]

    tokenizer = load_tokenizer(tiny_dir)
    answer = Answer(tokenizer, "<action>up</action>")
    collector = RolloutCollector(make_group, tokenizer, answer, None, None, lockstep=False)
    (played,) = collector.collect([3], 2, GREEDY)
    recorded = made[0].episodes
    collector.close()
    assert [(e.states, e.rewards) for e in played] == [
        (r["states"], r["rewards"]) for r in recorded
    ]
    assert [len(e.turns) for e in played] == [len(r["rewards"]) for r in recorded] == [3, 3]
    assert [e.episode_return for e in played] == [sum(r["rewards"]) for r in recorded]

"""The trainer's run configuration: typed fields, clear errors, key=value overrides."""

import os
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from rewardflow_train.config import ConfigError, load_config  # noqa: E402

pytestmark = pytest.mark.train

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_validates(path):
    config = load_config(path)
    assert config.env.id.startswith("RF-")


def test_example_configs_cover_cpu_and_every_env_on_gpu():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {
        "sokoban_cpu.yaml",
        "sokoban_gpu.yaml",
        "alfworld_gpu.yaml",
        "search_gpu.yaml",
        "webshop_gpu.yaml",
    } <= names


def test_overrides_reach_nested_fields_and_are_typed(tmp_path):
    config = load_config(
        write(tmp_path, "model: {tiny: {}}\n"),
        [
            "train.steps=7",
            "ppo.kl_coef=0.05",
            "env.kwargs.dim_room=[5, 5]",
            "resume=true",
            "model.tiny.arch=qwen2",
        ],
    )
    assert config.train.steps == 7
    assert config.ppo.kl_coef == 0.05
    assert config.env.kwargs == {"dim_room": [5, 5]}
    assert config.resume is True
    assert config.model.tiny.arch == "qwen2"


def test_an_int_is_accepted_where_a_float_is_expected(tmp_path):
    config = load_config(write(tmp_path, "model: {tiny: {}}\noptim: {lr: 1}\n"))
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model: {tiny: {}}\nppo: {epoch: 2}\n", [], "unknown config key 'ppo.epoch'"),
        ("model: {tiny: {}}\n", ["ppo.epochs=two"], "ppo.epochs: expected int, got 'two'"),
        ("model: {tiny: {}}\n", ["train.steps=1.5"], "train.steps: expected int"),
        ("model: {tiny: {}}\n", ["ppo.epochs=true"], "ppo.epochs: expected int, got True"),
        ("model: {tiny: {}}\n", ["advantage.estimator=ppo"], "advantage.estimator: expected one"),
        ("model: {tiny: {}}\n", ["deepspeed.zero_stage=4"], "deepspeed.zero_stage"),
        (
            "model: {tiny: {}}\n",
            ["deepspeed.offload_optimizer=cpu"],
            "deepspeed.offload_optimizer=cpu needs deepspeed.zero_stage >= 1",
        ),
        (
            "model: {tiny: {}}\n",
            ["deepspeed.zero_stage=2", "deepspeed.offload_param=cpu"],
            "deepspeed.offload_param=cpu needs deepspeed.zero_stage=3",
        ),
        (
            "model: {tiny: {}}\n",
            ["rollout.group_size=0"],
            "rollout.group_size: must be >= 1, got 0",
        ),
        (
            "model: {tiny: {}}\n",
            ["rollout.group_size=1"],
            "rollout.group_size: advantage.estimator rewardflow compares the episodes of a group",
        ),
        (
            "model: {tiny: {}}\n",
            ["advantage.gamma=1.5"],
            "advantage.gamma: must be in (0, 1], got 1.5",
        ),
        (
            "model: {tiny: {}}\n",
            ["optim.betas=[0.9]"],
            "optim.betas: expected a list of 2 values, got [0.9]",
        ),
        ("model: {tiny: {}}\n", ["eval_tasks.seed=0"], "overlap the training task seeds"),
        ("{}\n", [], "set model.path (an HF causal LM directory or Hub id) or model.tiny"),
        ("model: {tiny: {}}\n", ["model.path=/models/m"], "add model.tiny=null"),
        ("model: {tiny: {}}\nenv: 3\n", [], "env: expected a mapping"),
        ("- a\n- b\n", [], "must hold a mapping"),
        ("model: {tiny: {}}\n", ["train.steps"], "is not of the form key=value"),
        (
            "model: {tiny: {}}\ntrain: {steps: 3}\n",
            ["train.steps.x=1"],
            "'train.steps' is not a mapping",
        ),
    ],
)
def test_invalid_configs_fail_naming_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), overrides)
    assert message in str(error.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_a_config_path_that_is_no_yaml_file_is_named_for_what_it_is(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a YAML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="'/dev/null' is not a regular file"):
        load_config("/dev/null")


def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path):
    path = write(tmp_path, "seed: 1\ntrain:\n  steps: 3\n  eval_every: 1\n  steps: 4\n")
    with pytest.raises(ConfigError, match="key 'steps' appears twice, on lines 3 and 5"):
        load_config(path)
    merged = write(tmp_path, "base: &base {steps: 3}\ntrain:\n  <<: *base\n  eval_every: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'base'"):
        load_config(merged)  # the merge itself is no repeated key


def test_to_dict_round_trips_through_yaml(tmp_path):
    import yaml

    config = load_config(CONFIGS / "sokoban_cpu.yaml", ["optim.betas=[0.8, 0.9]"])
    dumped = write(tmp_path, yaml.safe_dump(config.to_dict()))
    assert load_config(dumped) == config


def test_import_callable_names_the_setting_it_reads():
    from rewardflow_train.config import import_callable

    assert import_callable("os.path:join", "env.state_key") is os.path.join
    with pytest.raises(ConfigError, match="env.state_key: cannot import 'os.path:nope'"):
        import_callable("os.path:nope", "env.state_key")
    with pytest.raises(ConfigError, match="env.state_key: 'os.path:sep' is not callable"):
        import_callable("os.path:sep", "env.state_key")


def test_evaluation_by_task_index_may_reuse_the_training_seeds(tmp_path):
    """Indexes into the held-out split's task list are not seeds of training tasks."""
    path = write(tmp_path, "model: {tiny: {}}\n")
    config = load_config(path, ["eval_tasks.task_index=true", "eval_tasks.seed=0"])
    assert config.eval_tasks.task_index and config.eval_tasks.seed == 0
    with pytest.raises(ConfigError, match="overlap the training task seeds"):
        load_config(path, ["eval_tasks.seed=0"])


@pytest.mark.parametrize(
    ("text", "override", "key", "value"),
    [
        ("model: {tiny: {}}\noptim: {lr: 1e-3}\n", None, "lr", 1e-3),
        ("model: {tiny: {}}\n", "optim.lr=1e-3", "lr", 1e-3),
        ("model: {tiny: {}}\n", "optim.lr=5E-4", "lr", 5e-4),
        ("model: {tiny: {}}\n", "optim.weight_decay=1e2", "weight_decay", 100.0),
    ],
)
def test_numbers_in_exponent_form_read_as_a_user_types_them(tmp_path, text, override, key, value):
    """YAML 1.1 reads 1e-3 (no dot) as a string; docs and users write it so."""
    config = load_config(write(tmp_path, text), [override] if override else [])
    assert getattr(config.optim, key) == value


def test_an_unknown_key_lists_the_known_keys_of_its_block(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "model: {tiny: {}}\n"), ["optim.learning_rate=1e-3"])
    assert str(error.value) == (
        "unknown config key 'optim.learning_rate'; known keys here: "
        "['lr', 'weight_decay', 'betas', 'grad_clip', 'warmup_steps', 'schedule']"
    )


def test_a_value_out_of_range_stops_main_naming_the_key_and_the_range(tmp_path, capsys):
    from rewardflow_train.main import main

    path = write(tmp_path, "model: {tiny: {}}\n")
    assert main(["--config", str(path), "optim.lr=-1"]) == 2
    assert capsys.readouterr().err == "error: optim.lr: must be > 0, got -1\n"


def test_help_config_lists_every_key_with_its_type_default_and_description(capsys):
    from rewardflow_train.main import main

    with pytest.raises(SystemExit) as done:
        main(["--help-config"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "optim.lr (float, > 0; default 0.0001)\n    peak learning rate of AdamW\n" in text
    assert "rollout.vllm.sleep_level (int, in [1, 2]; default 2)\n" in text
    assert "model.tiny.arch (str, `llama` or `qwen2`; default `llama`)\n" in text


def test_help_config_of_one_block_lists_only_its_keys(capsys):
    from rewardflow_train.main import main

    with pytest.raises(SystemExit) as done:
        main(["--help-config", "ppo"])
    assert done.value.code == 0
    keys = [line.split(" ")[0] for line in capsys.readouterr().out.splitlines() if line[:1] != " "]
    assert keys[0] == "ppo.epochs" and all(key.startswith("ppo.") for key in keys)
    with pytest.raises(SystemExit) as done:
        main(["--help-config", "nope"])
    assert done.value.code == 2
    assert "no block 'nope'; blocks: env, model," in capsys.readouterr().err


def test_the_docs_key_tables_are_the_schemas():
    """docs/training.md's key tables are made from the schema; after a change to a config
    field, `python -m rewardflow_train.config_reference` rewrites them."""
    from rewardflow_train.config_reference import DOCS, with_tables

    docs = (Path(__file__).parents[1] / DOCS).read_text(encoding="utf-8")
    assert docs.count("made by python -m rewardflow_train.config_reference") == 2
    assert with_tables(docs) == docs

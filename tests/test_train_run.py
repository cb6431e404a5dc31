"""Whole trainer runs on CPU: one process (python and deepspeed launcher), two processes,
resume, the files a run writes, and one clear message per kind of bad input."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("deepspeed")

from ranks import free_port  # noqa: E402

import rewardflow_envs  # noqa: E402
from rewardflow_train.main import main  # noqa: E402

pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "rewardflow_train" / "main.py"
CONFIG = ROOT / "examples" / "configs" / "sokoban_cpu.yaml"

# A run small enough for a test: a 1-layer model, 2 tasks x 2 members, 3-step episodes.
TINY = [
    "env.kwargs={dim_room: [5, 5], num_boxes: 1, max_steps: 3, search_depth: 10,"
    " generator: bounded}",
    "model.tiny={hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64,"
    " vocab_size: 400, context_length: 512, tokenizer_episodes: 6}",
    "warmup.episodes=4",
    "warmup.epochs=1",
    "rollout.tasks_per_step=2",
    "rollout.group_size=2",
    "rollout.max_new_tokens=8",
    "ppo.micro_batch_size=4",
    "ppo.mini_batches=2",
    "ppo.kl_coef=0.05",
    "eval_tasks.count=2",
    "train.eval_every=1",
    "train.save_every=2",
    "train.steps=2",
    "log.tensorboard=false",
    "log.progress_bar=false",
]


def run_python(output_dir, *overrides, timeout=600):
    command = [
        sys.executable,
        str(MAIN),
        "--config",
        str(CONFIG),
        f"output_dir={output_dir}",
        *TINY,
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def run_launcher(output_dir, processes, *overrides, timeout=600):
    launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent))
    if launcher is None:
        pytest.skip("the deepspeed launcher is not on PATH")
    command = [
        launcher,
        "--num_gpus",
        str(processes),
        "--master_port",
        str(free_port()),
        str(MAIN),
        "--config",
        str(CONFIG),
        f"output_dir={output_dir}",
        *TINY,
        *overrides,
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def records(output_dir, kind):
    lines = (Path(output_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def without_timing(record):
    return {
        k: v
        for k, v in record.items()
        if k != "time" and not k.startswith(("time/", "throughput/"))
    }


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# Bad input: one clear message each, exit status 2, nothing trained.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.tiny=null", "model.path=/no/such/model"], "model.path '/no/such/model' does not"),
        (["env.id=RF-NoSuchEnv-v0"], "env.id 'RF-NoSuchEnv-v0' is not a registered Gymnasium"),
        (["env.id=no_such_module:Thing-v0"], "cannot import module 'no_such_module'"),
        (["ppo.epochs=two"], "ppo.epochs: expected int, got 'two'"),
        (["rollout.tempreature=1"], "unknown config key 'rollout.tempreature'"),
        (["advantage.step_weight=.nan"], "advantage.step_weight: expected a finite number, got"),
        (["advantage.invalid_action_penalty=.inf"], "invalid_action_penalty: expected a finite"),
        (["optim.betas=[0.9, .nan]"], "optim.betas[1]: expected a finite number"),
        (["optim.betas=[0.9, 1.5]"], "optim.betas[1]: must be in [0, 1), got 1.5"),
        (["ppo.kl_coef=.inf"], "ppo.kl_coef: expected a finite number"),
        (["env.max_turns=0"], "env.max_turns: must be >= 1, got 0"),
        (["seed=-1"], "seed: must be >= 0, got -1"),
        (["eval_tasks.seed=-5"], "eval_tasks.seed: must be >= 0, got -5"),
        (["env.kwargs={dim_room: [2, 2]}"], "env.kwargs: RF-Sokoban-v0 cannot be made with"),
        (["env.kwargs={no_such_kwarg: 1}"], "unexpected keyword argument 'no_such_kwarg'"),
        (["eval_tasks.kwargs={dim_room: [2, 2]}"], "eval_tasks.kwargs: RF-Sokoban-v0 cannot be"),
        (["warmup.env_kwargs={num_boxes: 0}"], "warmup.env_kwargs: RF-Sokoban-v0 cannot be made"),
        (
            ["model.tiny.tokenizer_env_kwargs={num_boxes: 0}"],
            "model.tiny.tokenizer_env_kwargs: RF-Sokoban-v0 cannot be made",
        ),
        (
            ["env.id=RF-WebShop-v0", "env.kwargs={data_path: /no/such/dir}"],
            "/no/such/dir",
        ),
        (["env.state_key=os:getcwd"], "env.state_key: os:getcwd must take (observation, info)"),
        (["output_dir=/proc/x"], "output_dir '/proc/x' cannot be created or written: No such"),
        (["env.state_key=builtins:list"], "env.state_key: builtins:list must take"),
        (
            ["env.id=RF-Search-v0", "env.kwargs={invalid_action_reward: .nan}"],
            "env.kwargs: RF-Search-v0 cannot be made with {'invalid_action_reward': nan}: "
            "invalid_action_reward must be a finite number, got nan",
        ),
        (
            [
                "env.id=RF-Search-v0",
                "env.kwargs={}",
                "eval_tasks.kwargs={split: test}",
                "eval_tasks.task_index=true",
                "eval_tasks.seed=0",
                "eval_tasks.count=999",
            ],
            "eval_tasks.task_index: the env has no task 998",
        ),
        (
            ["env.id=RF-Search-v0", "env.kwargs={}", "train_tasks={task_index: true, seed: 99990}"],
            "train_tasks.task_index: the env has no task 99990",
        ),
        (
            ["env.kwargs={render_mode: 3}"],
            "render_mode must be None or one of ('ansi', 'rgb_array'), got 3",
        ),
    ],
)
def test_bad_input_gives_one_clear_message(tmp_path, capsys, overrides, message):
    code = main(["--config", str(CONFIG), f"output_dir={tmp_path / 'run'}", *overrides])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: ") and message in error
    assert error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_evaluation_plays_the_split_eval_env_kwargs_name():
    pytest.importorskip("bm25s")
    from rewardflow_train.config import load_config
    from rewardflow_train.rollout.envs import EnvFactory

    config = load_config(
        CONFIG, ["env.id=RF-Search-v0", "env.kwargs={}", "eval_tasks.kwargs={split: test}"]
    )
    factory = EnvFactory(config)
    data = Path(__file__).parents[1] / "rewardflow_envs" / "data" / "search"
    split_ids = {
        split: {json.loads(line)["id"] for line in (data / f"{split}.jsonl").open()}
        for split in ("train", "test")
    }
    for make, split in ((factory.make_group, "train"), (factory.make_eval_group, "test")):
        group = make(1)
        played = {group.reset(seed=seed)[1]["rollout_0"]["task_id"] for seed in range(20)}
        group.close()
        assert played <= split_ids[split], split


def test_warmup_and_tokenizer_text_are_played_with_their_env_kwargs(tmp_path, monkeypatch):
    import rewardflow_train.trainer as trainer

    played = {"warmup": [], "tokenizer": []}

    def recording(name, real):
        def record(make_env, *args):
            env = make_env()
            played[name].append(env.spec.kwargs)
            env.close()
            return real(make_env, *args)

        return record

    monkeypatch.setattr(trainer, "expert_pairs", recording("warmup", trainer.expert_pairs))
    monkeypatch.setattr(trainer, "env_corpus", recording("tokenizer", trainer.env_corpus))
    overrides = [
        *TINY,
        "train.steps=0",
        "warmup.env_kwargs={max_steps: 2, num_boxes: 1}",
        "model.tiny.tokenizer_env_kwargs={max_steps: 5}",
    ]
    assert main(["--config", str(CONFIG), f"output_dir={tmp_path / 'run'}", *overrides]) == 0
    seen = {
        name: [(kwargs["max_steps"], kwargs["num_boxes"], kwargs["expert"]) for kwargs in made]
        for name, made in played.items()
    }
    assert seen == {"warmup": [(2, 1, True)], "tokenizer": [(5, 1, True)]}
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "max_steps: 2" in saved and "max_steps: 3" in saved and "max_steps: 5" in saved


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("env:\n  system_prompt: caf\xe9\n".encode("latin-1"))
    code = main(["--config", str(config), f"output_dir={tmp_path / 'run'}"])
    error = capsys.readouterr().err
    assert code == 2 and f"config file '{config}' is not UTF-8 text" in error


def test_a_model_dir_without_config_json_is_rejected(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    code = main(["--config", str(CONFIG), "model.tiny=null", f"model.path={tmp_path / 'weights'}"])
    assert code == 2
    assert "is not an HF model directory (no config.json in it)" in capsys.readouterr().err


def test_a_run_that_ends_leaves_no_process_group_behind(tmp_path, capsys):
    """A process that exits with live gloo groups can abort in their threads (SIGABRT,
    "terminate called without an active exception"): main tears them down, refused or not."""
    import torch.distributed as dist

    launcher_variables = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    before = {name: os.environ.get(name) for name in launcher_variables}
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    assert main(["--config", str(CONFIG), f"output_dir={out}", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert not dist.is_initialized()
    assert {name: os.environ.get(name) for name in launcher_variables} == before


# Trains as main.py does, and writes to argv[1] how many episodes each solve of a group's
# graph held. In a process of its own: DeepSpeed keeps its process groups in module globals, so
# a second engine in the test process would find those of the first.
COUNTING_SOLVES = """
import json, sys
from rewardflow_envs.flow.episodes import GroupArrays
from rewardflow_train.main import main

solved, solve = [], GroupArrays.solve

def counting(self, *args, **kwargs):
    solved.append(len(self.lengths))
    return solve(self, *args, **kwargs)

GroupArrays.solve = counting
code = main(sys.argv[2:])
open(sys.argv[1], "w").write(json.dumps(solved))
sys.exit(code)
"""


def test_a_step_solves_the_graph_of_each_group_once(tmp_path):
    """The advantages and the signal metrics of a step read one solution of each group's
    graph."""
    out, solved = tmp_path / "run", tmp_path / "solved.json"
    overrides = [*TINY, "train.steps=1", "warmup.enabled=false", "eval_tasks.count=1"]
    command = [sys.executable, "-c", COUNTING_SOLVES, str(solved), "--config", str(CONFIG)]
    command += [f"output_dir={out}", *overrides]
    check(subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT))
    assert json.loads(solved.read_text()) == [2, 2]  # rollout.tasks_per_step groups of 2
    (train,) = records(out, "train")
    assert 0 < train["signal/shared_anchor_steps"] <= 1


# Trains as main.py does, and writes to argv[1] the seed and options of every group reset.
RECORDING_RESETS = """
import json, sys
from rewardflow_envs.group import GroupEnv
from rewardflow_train.main import main

resets, reset = [], GroupEnv.reset

def recording(self, seed=None, options=None):
    resets.append([seed, options])
    return reset(self, seed=seed, options=options)

GroupEnv.reset = recording
code = main(sys.argv[2:])
open(sys.argv[1], "w").write(json.dumps(resets))
sys.exit(code)
"""


def test_training_cycles_through_train_tasks_and_plays_task_list_entries(tmp_path):
    """train_tasks: 2 entries of the env's task list, cycled through over 2 steps of 2 tasks;
    the held-out task a seed from eval_tasks.seed."""
    out, resets = tmp_path / "run", tmp_path / "resets.json"
    overrides = [
        *TINY,
        "warmup.enabled=false",
        "train_tasks={seed: 3, count: 2, task_index: true}",
        "eval_tasks={seed: 40, count: 1}",
        "train.eval_every=2",
    ]
    command = [sys.executable, "-c", RECORDING_RESETS, str(resets), "--config", str(CONFIG)]
    command += [f"output_dir={out}", *overrides]
    check(subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT))
    played = [tuple(map(json.dumps, reset)) for reset in json.loads(resets.read_text())]
    held_out = ("40", "null")
    train = [(str(seed), json.dumps({"task": seed})) for seed in (3, 4)]
    assert played == [held_out, *train, *train, held_out]


@pytest.mark.slow
def test_generation_longer_than_the_context_is_a_clear_error(tmp_path):
    result = run_python(tmp_path / "run", "warmup.enabled=false", "model.tiny.context_length=64")
    assert result.returncode == 2
    assert "exceeds the 64 tokens a turn may take" in result.stderr
    assert "Traceback" not in result.stderr


# Whole runs.


@pytest.mark.slow
def test_python_run_writes_metrics_checkpoints_final_model_and_plot(tmp_path):
    out = tmp_path / "run"
    check(run_python(out))
    train = records(out, "train")
    assert [r["step"] for r in train] == [1, 2]
    for record in train:
        assert record["train/episodes"] == 4
        assert 0 <= record["train/success"] <= 1
        assert record["samples"] > 0 and record["time/generate"] > 0
        assert "loss/policy" in record and "loss/kl" in record
        # Both members of a group take their first step from the task's start state.
        assert 0 < record["signal/shared_anchor_steps"] <= 1
        assert 0 <= record["signal/step_signal_steps"] <= record["signal/shared_anchor_steps"]
        assert 0 <= record["signal/mixed_groups"] <= 1
    assert [r["step"] for r in records(out, "eval")] == [0, 1, 2]
    assert [r["step"] for r in records(out, "warmup")] == [1]
    assert (out / "checkpoints" / "latest").read_text() == "step_000002"
    checkpoint = out / "checkpoints" / "step_000002"
    assert json.loads((checkpoint / "trainer_state.json").read_text()) == {
        "step": 2,
        "world_size": 1,
    }
    assert (checkpoint / "rng" / "rank_0.pt").is_file() and (checkpoint / "engine").is_dir()
    assert not list((out / "checkpoints").glob(".tmp-*"))
    for model_dir in ("tiny_model", "warmup_model", "final_model"):
        assert (out / model_dir / "config.json").is_file()
        assert (out / model_dir / "tokenizer.json").is_file()
    assert (out / "curves.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and "eval_success_after_rl" in summary
    # Which code made these numbers: the version, and the commit of a checkout (the run's
    # script runs from this checkout; an installed package has none).
    assert summary["code"]["version"] == rewardflow_envs.__version__
    assert summary["code"]["commit"] is None or re.fullmatch(
        r"[0-9a-f]{40}(\+dirty)?", summary["code"]["commit"]
    )
    # The same run again without resume=true refuses to mix into the old one.
    again = run_python(out)
    assert again.returncode == 2 and "already holds a run" in again.stderr


@pytest.mark.slow
def test_resumed_run_gives_the_same_metrics_as_an_uninterrupted_one(tmp_path):
    steps = ["train.steps=4", "train.eval_every=2"]
    check(run_python(tmp_path / "whole", *steps))
    check(run_python(tmp_path / "split", *steps, "train.halt_at_step=2"))
    assert [r["step"] for r in records(tmp_path / "split", "train")] == [1, 2]
    assert not (tmp_path / "split" / "final_model").exists()
    resumed = run_python(tmp_path / "split", *steps, "resume=true")
    check(resumed)
    assert "resumed from" in resumed.stdout
    for kind in ("train", "eval", "warmup"):
        whole = [without_timing(r) for r in records(tmp_path / "whole", kind)]
        split = [without_timing(r) for r in records(tmp_path / "split", kind)]
        assert whole == split, kind


@pytest.mark.slow
def test_resume_with_an_empty_latest_continues_from_the_newest_checkpoint(tmp_path):
    """A crash can leave `latest` empty; the run must neither start over nor lose history."""
    out = tmp_path / "run"
    check(run_python(out, "train.steps=3", "train.save_every=1", "train.halt_at_step=2"))
    (out / "checkpoints" / "latest").write_text("")
    resumed = run_python(out, "train.steps=3", "train.save_every=1", "resume=true")
    check(resumed)
    assert "latest is empty; resuming from the newest complete checkpoint" in resumed.stdout
    assert "at step 2" in resumed.stdout
    assert [r["step"] for r in records(out, "train")] == [1, 2, 3]
    assert (out / "checkpoints" / "latest").read_text() == "step_000003"


@pytest.mark.slow
def test_deepspeed_launcher_one_process(tmp_path):
    out = tmp_path / "run"
    check(run_launcher(out, 1, "deepspeed.zero_stage=1", "warmup.enabled=false"))
    assert [r["step"] for r in records(out, "train")] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_launcher_two_processes(tmp_path, zero_stage):
    out = tmp_path / "run"
    check(run_launcher(out, 2, f"deepspeed.zero_stage={zero_stage}"))
    train = records(out, "train")
    assert [r["step"] for r in train] == [1, 2]
    # Both ranks' tasks are counted: 2 tasks x 2 members per step.
    assert all(r["train/episodes"] == 4 for r in train)
    state = json.loads((out / "checkpoints" / "step_000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert sorted(p.name for p in (out / "checkpoints" / "step_000002" / "rng").iterdir()) == [
        "rank_0.pt",
        "rank_1.pt",
    ]
    assert (out / "final_model" / "config.json").is_file()


@pytest.mark.slow
def test_zero3_with_a_rank_that_has_no_episode_at_all(tmp_path):
    """One task per step and one evaluation task on two ranks: rank 1 never has a live
    episode, yet must keep stepping with rank 0 (every ZeRO-3 forward gathers shards)."""
    out = tmp_path / "run"
    overrides = ["deepspeed.zero_stage=3", "rollout.tasks_per_step=1", "eval_tasks.count=1"]
    check(run_launcher(out, 2, *overrides))
    assert [r["train/episodes"] for r in records(out, "train")] == [2, 2]
    assert [r["eval/episodes"] for r in records(out, "eval")] == [1, 1, 1]


@pytest.mark.slow
def test_a_refused_output_dir_stops_every_rank_at_once(tmp_path):
    """Rank 0 refuses an output_dir that holds a run; the other ranks must stop with the same
    message instead of waiting at a barrier until the collective timeout."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    port = str(free_port())
    command = [sys.executable, str(MAIN), "--config", str(CONFIG), f"output_dir={out}", *TINY]
    processes = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "DS_ACCELERATOR": "cpu",
        }
        processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 2, stderr[-2000:]
        assert "already holds a run" in stderr


@pytest.mark.slow
def test_the_credit_audit_logs_each_estimators_agreement_with_the_oracle(tmp_path):
    out = tmp_path / "run"
    check(run_python(out, "log.credit_audit=true", "train.steps=1"))
    (train,) = records(out, "train")
    # This barely warmed-up policy's moves are mostly unreadable, which leaves the room as it
    # was (label 0): the scores may be undefined (NaN), never out of range.
    for estimator in ("rewardflow", "gigpo", "grpo", "rloo"):
        correlation = train[f"credit/{estimator}/correlation"]
        agreement = train[f"credit/{estimator}/sign_agreement"]
        assert math.isnan(correlation) or -1 <= correlation <= 1
        assert math.isnan(agreement) or 0 <= agreement <= 1

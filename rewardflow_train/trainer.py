"""The training run: model, optional warm-up, then RL steps with evaluation and checkpoints.

Each RL step: roll out B tasks x N members, compute step advantages per group with
`rewardflow_envs.flow`, score old/reference log-probs, run the PPO epochs. Tasks are split
over ranks (task b goes to rank b % world_size); DeepSpeed averages the gradients.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np

from rewardflow_train.advantage import (
    credit_rates,
    credit_sums,
    signal_counts,
    signal_rates,
    solve_group,
)
from rewardflow_train.config import ConfigError, RunConfig
from rewardflow_train.rollout.collector import RolloutCollector, episode_metrics, finish_metrics
from rewardflow_train.rollout.envs import EnvFactory
from rewardflow_train.rollout.generation import (
    HFGenerator,
    SamplingSettings,
    turn_context,
    vllm_problem,
)
from rewardflow_train.runtime.checkpoint import export_model, resume_from, save_checkpoint
from rewardflow_train.runtime.distributed import (
    Dist,
    all_reduce,
    barrier,
    broadcast_object,
    init_distributed,
    sum_across_ranks,
)
from rewardflow_train.runtime.engine import (
    build_engine,
    build_frozen,
    free_memory,
    release_engine,
)
from rewardflow_train.runtime.lock import OutputDirLock
from rewardflow_train.runtime.metrics import (
    MetricsLogger,
    WandbRun,
    code_version,
    console_line,
    discarded_path,
    metrics_path,
    read_metrics,
    require_wandb,
    set_aside_metrics,
)
from rewardflow_train.runtime.models import (
    build_tiny_model,
    context_length,
    env_corpus,
    load_model,
    load_tokenizer,
    stop_token_ids,
)
from rewardflow_train.runtime.output_dir import prepare_output_dir
from rewardflow_train.runtime.stop import StopSignals
from rewardflow_train.update.ppo import Collator, PPOTrainer, training_samples
from rewardflow_train.update.prompt_cache import supports_cache
from rewardflow_train.update.warmup import expert_pairs, run_sft, sft_samples

# The metrics of an evaluation, logged as its own "eval" record.
EVAL_KEYS = ("eval/", "time/eval")


def seed_everything(seed: int, rank: int) -> None:
    """Global RNGs (sampling in generate) differ per rank, repeat across runs."""
    import torch

    seed = seed * 1009 + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def eval_sampling_settings(config: RunConfig, rollout: SamplingSettings) -> SamplingSettings:
    """The rollouts' sampling with the evaluation's own choices over it (both are > 0 when
    set, so `or` falls back only on null)."""
    return dataclasses.replace(
        rollout,
        greedy=config.eval.greedy,
        temperature=config.eval.temperature or rollout.temperature,
        top_p=config.eval.top_p or rollout.top_p,
    )


def rank_share(seeds: list[int], dist: Dist) -> list[int]:
    return [s for i, s in enumerate(seeds) if i % dist.world_size == dist.rank]


class Trainer:
    def __init__(self, config: RunConfig, stop: StopSignals | None = None):
        from rewardflow_train.runtime.models import resolve_model_path

        self.config = config
        # Signals are the caller's to install; without them no stop is ever requested.
        self.stop = stop or StopSignals(config.train.stop_grace_s)
        self.output_dir = Path(config.output_dir)
        # Input errors first, before any process group or file exists.
        self.envs = EnvFactory(config)
        if config.log.wandb:
            require_wandb()
        # A Hub id is fetched here, by every rank (the HF cache locks its files).
        self.model_path = (
            resolve_model_path(config.model.path) if config.model.path is not None else None
        )
        self.dist = init_distributed(config.deepspeed)
        self.lock = OutputDirLock(self.output_dir)
        prepare_output_dir(config, self.lock, self.dist)
        seed_everything(config.seed, self.dist.rank)
        self.logger = MetricsLogger(
            self.output_dir, self.dist.is_main, config.log.tensorboard, self._start_wandb_run()
        )

    def _start_wandb_run(self) -> WandbRun | None:
        """Rank 0 starts the W&B run of log.wandb=true; as with the output directory, every
        rank learns whether it could, so a refusal (no W&B login, say) stops all of them."""
        config = self.config
        if not config.log.wandb:
            return None
        run, problem = None, None
        if self.dist.is_main:
            try:
                run = WandbRun(
                    self.output_dir,
                    config.to_dict(),
                    config.log.wandb_project,
                    config.log.wandb_run_name,
                    config.resume,
                )
            except ConfigError as error:
                problem = str(error)
        problem = broadcast_object(problem)
        if problem is not None:
            self.lock.release()
            raise ConfigError(problem)
        return run

    # Models -------------------------------------------------------------------------------

    def base_model_dir(self) -> Path:
        config = self.config
        if self.model_path is not None:
            return self.model_path
        model_dir = self.output_dir / "tiny_model"
        if self.dist.is_main and not (model_dir / "config.json").exists():
            texts = env_corpus(
                self.envs.make_tokenizer_text_env,
                config.model.tiny.tokenizer_episodes,
                config.seed,
                config.env.system_prompt,
            )
            build_tiny_model(config.model.tiny, texts, config.seed, model_dir)
        barrier()
        return model_dir

    def warmup(self, base_dir: Path, tokenizer) -> Path:
        """Supervised warm-up into OUTPUT_DIR/warmup_model (skipped when it already exists)."""
        config, dist = self.config, self.dist
        out_dir = self.output_dir / "warmup_model"
        if (out_dir / "config.json").exists():
            return out_dir
        pairs = expert_pairs(self.envs.make_warmup_expert, config.warmup, config.seed)
        samples = sft_samples(pairs, tokenizer, config.env.system_prompt)
        optim = config.optim.model_copy(update={"schedule": "constant", "warmup_steps": 0})
        engine = build_engine(
            load_model(base_dir, dist.dtype),
            config.deepspeed,
            optim,
            config.warmup.lr,
            1,
            dist.dtype,
        )
        run_sft(
            engine,
            samples,
            config.warmup,
            self._collator(engine, tokenizer),
            config.seed,
            lambda epoch, metrics: self.logger.log("warmup", epoch, metrics),
        )
        if dist.is_main:
            print(f"warm-up: {len(pairs)} expert steps, {config.warmup.epochs} epoch(s)")
        export_model(engine, tokenizer, out_dir, dist)
        release_engine(engine)
        del engine
        free_memory()
        return out_dir

    @property
    def lockstep(self) -> bool:
        """Under ZeRO-3 every forward pass gathers shards from all ranks: ranks run each pass
        together."""
        return self.config.deepspeed.zero_stage == 3

    def share_prompts(self, engine) -> bool:
        return self.config.model.share_prompts and supports_cache(engine)

    def _collator(self, engine, tokenizer) -> Collator:
        return Collator(
            tokenizer.pad_token_id, self.dist.device, self.share_prompts(engine), self.lockstep
        )

    # Evaluation ---------------------------------------------------------------------------

    def eval_tasks(self, step: int) -> int:
        """Held-out tasks evaluated after `step`: eval.final_tasks at the last step when set."""
        config = self.config
        if step == config.train.steps and config.eval.final_tasks is not None:
            return config.eval.final_tasks
        return config.eval_tasks.count

    def evaluate(self, collector: RolloutCollector, sampling: SamplingSettings, step: int) -> dict:
        config = self.config
        start = time.perf_counter()
        seeds = list(config.eval_tasks.seeds(self.eval_tasks(step)))
        groups = collector.collect(rank_share(seeds, self.dist), config.eval.group_size, sampling)
        metrics = finish_metrics(sum_across_ranks(episode_metrics(groups, "eval")), "eval")
        metrics["time/eval"] = time.perf_counter() - start
        return metrics

    # Main loop ----------------------------------------------------------------------------

    def run(self) -> dict:
        completed = False
        try:
            summary = self._run()
            completed = True
            return summary
        finally:
            self.logger.close(failed=not completed)
            self.lock.release()

    def _run(self) -> dict:
        from tqdm import tqdm

        config, dist = self.config, self.dist
        started = time.time()
        base_dir = self.base_model_dir()
        tokenizer = load_tokenizer(base_dir)
        policy_dir = self.warmup(base_dir, tokenizer) if config.warmup.enabled else base_dir

        total_updates = config.train.steps * config.ppo.epochs * config.ppo.mini_batches
        policy = load_model(policy_dir, dist.dtype)
        if config.model.gradient_checkpointing:
            policy.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        engine = build_engine(
            policy,
            config.deepspeed,
            config.optim,
            config.optim.lr,
            total_updates,
            dist.dtype,
        )
        reference = (
            build_frozen(
                load_model(policy_dir, dist.dtype), config.deepspeed, dist.dtype, dist.device
            )
            if config.ppo.kl_coef > 0
            else None
        )
        lockstep = self.lockstep
        generator = self._generator(engine, tokenizer, policy_dir, lockstep)
        collector, eval_collector = (
            RolloutCollector(
                make_group,
                tokenizer,
                generator,
                config.env.system_prompt,
                config.env.max_turns,
                lockstep,
                make_oracle,
                task_index,
            )
            for make_group, make_oracle, task_index in (
                (
                    self.envs.make_group,
                    self.envs.make_oracle if config.log.credit_audit else None,
                    config.train_tasks.task_index,
                ),
                (self.envs.make_eval_group, None, config.eval_tasks.task_index),
            )
        )
        ppo = PPOTrainer(
            engine,
            reference,
            config.ppo,
            config.rollout.temperature,
            self._collator(engine, tokenizer),
            config.seed * 7919,  # the same on every rank: mini-batches are cut globally
        )
        rollout_sampling = SamplingSettings(
            config.rollout.max_new_tokens, config.rollout.temperature, config.rollout.top_p, False
        )
        eval_sampling = eval_sampling_settings(config, rollout_sampling)

        start_step = 0
        checkpoint = None
        if config.resume:
            checkpoint, start_step = resume_from(engine, self.output_dir, dist)
        if checkpoint is not None:
            generator.sync_weights(engine.module)
        if dist.is_main:
            if checkpoint is not None:
                print(f"resumed from {checkpoint} at step {start_step}")
            # Without a checkpoint the run starts over: even its step-0 records are redone.
            self._set_aside_stale_metrics(start_step if checkpoint is not None else -1)
        if start_step == 0 and self.eval_tasks(0):
            self.logger.log("eval", 0, self.evaluate(eval_collector, eval_sampling, 0))

        last_step = config.train.steps
        if config.train.halt_at_step is not None:
            last_step = min(last_step, config.train.halt_at_step)
        bar = tqdm(
            total=config.train.steps,
            initial=start_step,
            desc="RL steps",
            dynamic_ncols=True,
            disable=not (dist.is_main and config.log.progress_bar),
        )
        for step in range(start_step + 1, last_step + 1):
            self.stop.step_in_progress = step
            metrics = self._train_step(step, collector, ppo, engine, rollout_sampling)
            if step % config.train.eval_every == 0 or step == config.train.steps:
                if self.eval_tasks(step):
                    metrics.update(self.evaluate(eval_collector, eval_sampling, step))
            train_metrics = {k: v for k, v in metrics.items() if not k.startswith(EVAL_KEYS)}
            self.logger.log("train", step, train_metrics)
            eval_metrics = {k: v for k, v in metrics.items() if k.startswith(EVAL_KEYS)}
            if eval_metrics:
                self.logger.log("eval", step, eval_metrics)
            if dist.is_main:
                bar.update(1)
                bar.write(console_line(step, config.train.steps, metrics))
            stopping = self.stop.agree(lambda values: all_reduce(values, op="max"))
            if stopping:
                self.stop.stop_deadline()
            if step % config.train.save_every == 0 or step == last_step or stopping:
                saved = save_checkpoint(
                    engine, self.output_dir, step, dist, config.train.keep_checkpoints
                )
            if stopping:
                raise self.stop.stopped_after(step, saved)
        self.stop.step_in_progress = None
        bar.close()
        collector.close()
        eval_collector.close()

        summary = {}
        if last_step == config.train.steps:
            export_model(engine, tokenizer, self.output_dir / "final_model", dist)
            summary = self._summary(time.time() - started)
        return summary

    def _set_aside_stale_metrics(self, start_step: int) -> None:
        """Records past the step the run starts from will be written again: they move to
        metrics_discarded.jsonl, so metrics.jsonl stays one consistent history."""
        if not metrics_path(self.output_dir).exists():
            return
        moved = set_aside_metrics(self.output_dir, start_step)
        if moved:
            print(
                f"note: {moved} metrics line(s) after step {start_step} (or unreadable) moved "
                f"to {discarded_path(self.output_dir)}"
            )

    def _generator(self, engine, tokenizer, policy_dir: Path, lockstep: bool):
        config, dist = self.config, self.dist
        context = turn_context(
            context_length(engine.module, tokenizer),
            config.rollout.max_prompt_tokens,
            config.rollout.max_new_tokens,
        )
        stop_ids = stop_token_ids(engine.module, tokenizer)
        if config.rollout.backend == "vllm":
            problem = vllm_problem()
            if problem:
                raise ConfigError(problem)
            if config.rollout.vllm.enable_sleep_mode and dist.device.type != "cuda":
                raise ConfigError("rollout.vllm.enable_sleep_mode needs a CUDA GPU; set it false")
            from rewardflow_train.rollout.vllm_engine import VLLMGenerator

            generator = VLLMGenerator(
                str(policy_dir),
                stop_ids,
                context,
                config.rollout.vllm,
                dist.dtype,
                config.seed * 1009 + dist.rank,
                on_cpu=dist.device.type == "cpu",
            )
            generator.sync_weights(engine.module)
            return generator
        return HFGenerator(
            engine.module,
            tokenizer,
            stop_ids,
            context,
            config.rollout.generation_batch_size,
            dist.device,
            share_prompts=self.share_prompts(engine),
            zero3_engine=engine if lockstep else None,
        )

    def _train_step(self, step, collector, ppo, engine, sampling) -> dict:
        config, dist = self.config, self.dist
        timer = time.perf_counter
        step_start = timer()
        collector.times.generate = collector.times.env = 0.0
        seeds = rank_share(config.training_task_seeds(step), dist)
        groups = collector.collect(seeds, config.rollout.group_size, sampling)
        collector.generator.sleep()
        rollout_time = timer() - step_start

        start = timer()
        # One solve of each group's graph: the signal metrics below read the same solutions.
        solved = [solve_group(group, config.advantage) for group in groups]
        samples = training_samples(groups, solved)
        advantage_time = timer() - start
        start = timer()
        ppo.score(samples, step)
        score_time = timer() - start
        start = timer()
        update = ppo.update(samples, step)
        update_time = timer() - start
        start = timer()
        sync_metrics = collector.generator.sync_weights(engine.module)
        sync_time = timer() - start

        totals = episode_metrics(groups, "train")
        totals["tokens/response"] = sum(len(s.response_ids) for s in samples)
        totals["tokens/trained"] = sum(len(s.prompt_ids) + len(s.response_ids) for s in samples)
        totals["samples"] = len(samples)
        totals = sum_across_ranks(totals)
        metrics = finish_metrics(totals, "train")
        metrics.update(signal_rates(sum_across_ranks(signal_counts(solved))))
        if config.log.credit_audit:
            metrics.update(credit_rates(sum_across_ranks(credit_sums(groups, config.advantage))))
        metrics.update(update)
        if sync_metrics:  # every rank has its own engine: the worst one counts
            worst = all_reduce(list(sync_metrics.values()), op="max")
            metrics.update(zip(sync_metrics, worst, strict=True))
        trained_tokens = totals["tokens/trained"] * config.ppo.epochs
        metrics.update(
            {
                "samples": totals["samples"],
                "tokens/response": totals["tokens/response"],
                "time/generate": collector.times.generate,
                "time/env": collector.times.env,
                "time/rollout": rollout_time,
                "time/advantage": advantage_time,
                "time/score": score_time,
                "time/update": update_time,
                "time/sync": sync_time,
                "time/step": timer() - step_start,
                "throughput/rollout_tokens_per_s": totals["tokens/response"] / rollout_time,
                "throughput/update_tokens_per_s": trained_tokens / max(update_time, 1e-9),
                "lr": engine.get_lr()[0],
            }
        )
        return metrics

    def _summary(self, wall_time: float) -> dict:
        evals = [r for r in read_metrics(self.output_dir) if r["kind"] == "eval"]
        summary = {
            "steps": self.config.train.steps,
            "wall_time_s": round(wall_time, 1),
            "code": code_version(),
        }
        if evals:
            summary["eval_success_before_rl"] = evals[0]["eval/success"]
            summary["eval_success_after_rl"] = evals[-1]["eval/success"]
            summary["eval_return_before_rl"] = evals[0]["eval/return"]
            summary["eval_return_after_rl"] = evals[-1]["eval/return"]
        if self.dist.is_main:
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            if evals:
                print(
                    f"held-out success: {summary['eval_success_before_rl']:.3f} before RL -> "
                    f"{summary['eval_success_after_rl']:.3f} after {self.config.train.steps} "
                    "RL steps"
                )
            if self.config.log.plot:
                from rewardflow_train.plot import plot_run

                print(f"curves: {plot_run(self.output_dir)}")
        return summary

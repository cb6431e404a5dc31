"""The envs a run plays: single envs and groups built from the `env` block (with the training
tasks', held-out tasks', warm-up's and tiny tokenizer's kwargs over it), after the env check of
both trainers."""

from __future__ import annotations

from rewardflow_train.config import ConfigError, RunConfig, import_callable
from rewardflow_train.env_check import EnvUse, check_env_uses, task_set_use


class EnvFactory:
    """Builds single envs and groups from the `env` block, after the env check of both trainers
    (`rewardflow_train.env_check`)."""

    def __init__(self, config: RunConfig):
        env = config.env
        self.id = env.id
        self.kwargs = config.train_tasks.env_kwargs(env)
        self.eval_kwargs = config.eval_tasks.env_kwargs(env)
        self.warmup_kwargs = {**env.kwargs, **config.warmup.env_kwargs}
        self.workers = env.workers
        self.worker_timeout = env.worker_timeout
        tiny = config.model.tiny
        self.tokenizer_kwargs = (
            None if tiny is None else {**env.kwargs, **tiny.tokenizer_env_kwargs}
        )
        self.state_key = import_callable(env.state_key, "env.state_key") if env.state_key else None
        check_env_uses(env, self._uses(config))
        # The credit audit's oracles read the expert's move from the infos.
        self.credit_audit = config.log.credit_audit
        self.oracle = self._oracle_class() if self.credit_audit else None
        if self.credit_audit:
            self._check_expert()

    def _uses(self, config: RunConfig) -> list[EnvUse]:
        """Every env kwargs the run plays, so that bad kwargs or a missing data path stop it
        with one message before any model is built; the envs of task sets that play the task
        list are asked for their first and last tasks."""
        uses = [
            task_set_use(
                "train_tasks",
                config.train_tasks,
                config.env,
                config.training_tasks,
                "train_tasks.count (or train.steps) or train_tasks.seed",
            ),
            task_set_use(
                "eval_tasks",
                config.eval_tasks,
                config.env,
                config.held_out_tasks,
                "eval_tasks.count (or eval.final_tasks) or eval_tasks.seed",
            ),
        ]
        if config.warmup.enabled:
            uses.append(EnvUse("warmup.env_kwargs", self.warmup_kwargs))
        if self.tokenizer_kwargs is not None:
            uses.append(EnvUse("model.tiny.tokenizer_env_kwargs", self.tokenizer_kwargs))
        return uses

    def _check_expert(self) -> None:
        import gymnasium

        try:
            gymnasium.make(self.id, **self.kwargs, expert=True).close()
        except TypeError as error:
            raise ConfigError(
                f"log.credit_audit: {self.id} has no expert (make(..., expert=True) failed: "
                f"{error})"
            ) from None

    def _oracle_class(self):
        from rewardflow_envs.audit.oracles import oracle_class

        try:
            return oracle_class(self.id)
        except ValueError as error:
            raise ConfigError(f"log.credit_audit: {error}") from None

    def make_oracle(self):
        """An oracle of the training env's moves (`log.credit_audit`)."""
        return self.oracle(self.kwargs)

    def make(self, **extra):
        import gymnasium

        return gymnasium.make(self.id, **self.kwargs, **extra)

    def make_warmup_expert(self):
        """An env made with the warm-up's kwargs that gives the expert's action."""
        import gymnasium

        try:
            return gymnasium.make(self.id, **self.warmup_kwargs, expert=True)
        except TypeError as error:
            raise ConfigError(
                f"{self.id} has no expert (make(..., expert=True) failed: {error}); "
                "the warm-up needs one: set warmup.enabled=false"
            ) from None

    def make_tokenizer_text_env(self):
        """The env whose episodes train the tiny tokenizer: with the expert where it has one."""
        import gymnasium

        try:
            return gymnasium.make(self.id, **self.tokenizer_kwargs, expert=True)
        except TypeError:
            return gymnasium.make(self.id, **self.tokenizer_kwargs)

    def make_group(self, size: int):
        kwargs = {**self.kwargs, "expert": True} if self.credit_audit else self.kwargs
        return self._group(size, kwargs)

    def make_eval_group(self, size: int):
        return self._group(size, self.eval_kwargs)

    def _group(self, size: int, kwargs: dict):
        from rewardflow_envs.group import GroupEnv

        return GroupEnv(
            self.id,
            size,
            state_key=self.state_key,
            workers=self.workers,
            worker_timeout=self.worker_timeout,
            **kwargs,
        )

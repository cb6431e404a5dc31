"""Step advantages from `rewardflow_envs.flow`, turned into training samples."""

from __future__ import annotations

from rewardflow_train.config import AdvantageConfig
from rewardflow_train.ppo import Sample
from rewardflow_train.rollout import Episode


def group_advantages(group: list[Episode], config: AdvantageConfig) -> list[list[float]]:
    """One advantage per step of each episode of one group (same task).

    A step whose action the env could not read gets `invalid_action_penalty` subtracted from
    its advantage. It is applied here rather than to the reward because such a step leaves
    the state unchanged: it adds no edge to the state graph, so a reward penalty would never
    reach its RewardFlow step term.
    """
    from rewardflow_envs.flow import advantages

    episodes = [{"states": e.states, "rewards": [t.reward for t in e.turns]} for e in group]
    values = advantages(
        episodes,
        estimator=config.estimator,
        gamma=config.gamma,
        step_weight=config.step_weight,
        norm_std=config.norm_std,
    )
    penalty = config.invalid_action_penalty
    return [
        [float(v) - (0.0 if turn.valid else penalty) for v, turn in zip(vs, e.turns, strict=True)]
        for vs, e in zip(values, group, strict=True)
    ]


def training_samples(groups: list[list[Episode]], config: AdvantageConfig) -> list[Sample]:
    """Every step of every episode as a sample whose advantage covers its response tokens."""
    samples = []
    for group in groups:
        values = group_advantages(group, config)
        for member, (episode, advantages) in enumerate(zip(group, values, strict=True)):
            for index, (turn, value) in enumerate(zip(episode.turns, advantages, strict=True)):
                if turn.response_ids:
                    key = (episode.task_seed, member, index)
                    samples.append(Sample(turn.prompt_ids, turn.response_ids, value, key))
    return samples

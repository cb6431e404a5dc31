"""Multi-turn rollouts: B tasks x N group members, one batched generation per turn.

Every live member of every group gets its prompt rendered with the chat template; all prompts
of a turn go through the generation backend together; each group then steps its members with
the decoded responses, until every member's episode has ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rewardflow_train.episode import Episode, Turn, encode_prompts
from rewardflow_train.rollout.generation import GenerationBackend, SamplingSettings


@dataclass
class RolloutTimes:
    generate: float = 0.0
    env: float = 0.0


class RolloutCollector:
    """Plays groups of episodes with the current policy."""

    def __init__(
        self,
        make_group: Callable[[int], Any],
        tokenizer,
        generator: GenerationBackend,
        system_prompt: str | None,
        max_turns: int | None,
        lockstep: bool,
        make_oracle: Callable[[], Any] | None = None,
        task_index: bool = False,
    ):
        self.make_group = make_group
        self.make_oracle = make_oracle
        # Task seeds index the env's task list (reset's options["task"]).
        self.task_index = task_index
        self.tokenizer = tokenizer
        self.generator = generator
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        self.lockstep = lockstep
        self._groups: dict[int, list[Any]] = {}
        self._oracles: list[Any] = []
        self.times = RolloutTimes()

    def _groups_of_size(self, size: int, count: int) -> list[Any]:
        pool = self._groups.setdefault(size, [])
        while len(pool) < count:
            pool.append(self.make_group(size))
        return pool[:count]

    def _oracles_for(self, count: int) -> list[Any]:
        """One oracle per group of a call (each follows its group's task), or none."""
        if self.make_oracle is None:
            return [None] * count
        while len(self._oracles) < count:
            self._oracles.append(self.make_oracle())
        return self._oracles[:count]

    def close(self) -> None:
        for pool in self._groups.values():
            for group in pool:
                group.close()
        self._groups.clear()
        for oracle in self._oracles:
            oracle.close()
        self._oracles.clear()

    def collect(
        self, task_seeds: list[int], group_size: int, sampling: SamplingSettings
    ) -> list[list[Episode]]:
        """One list of `group_size` episodes per task seed."""
        from rewardflow_train.runtime.distributed import all_reduce

        groups = self._groups_of_size(group_size, len(task_seeds))
        oracles = self._oracles_for(len(task_seeds))
        observations: list[dict[str, Any]] = []
        last_infos: list[dict[str, Any]] = []
        episodes: list[dict[str, Episode]] = []
        start = time.perf_counter()
        for group, oracle, seed in zip(groups, oracles, task_seeds, strict=True):
            options = {"task": seed} if self.task_index else None
            obs, infos = group.reset(seed=seed, options=options)
            if oracle is not None:
                oracle.start(seed, infos[group.possible_agents[0]], options)
            observations.append(obs)
            last_infos.append(dict(infos))
            episodes.append(
                {
                    agent: Episode(seed, task_type=infos[agent].get("task_type"))
                    for agent in group.possible_agents
                }
            )
        self.times.env += time.perf_counter() - start

        turn = 0
        while True:
            live = [(g, agent) for g, group in enumerate(groups) for agent in group.agents]
            if self.max_turns is not None and turn >= self.max_turns:
                live = []
            remaining = int(all_reduce([len(live)], op="max")[0]) if self.lockstep else len(live)
            if remaining == 0:
                break
            prompts = encode_prompts(
                self.tokenizer, [observations[g][agent] for g, agent in live], self.system_prompt
            )
            start = time.perf_counter()
            responses = self.generator.generate(prompts, sampling)
            self.times.generate += time.perf_counter() - start
            texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)

            start = time.perf_counter()
            by_group: dict[int, dict[str, int]] = {}
            for index, (g, agent) in enumerate(live):
                by_group.setdefault(g, {})[agent] = index
            for g, members in by_group.items():
                actions = {agent: texts[index] for agent, index in members.items()}
                # The group env records each step's state key and reward (`episodes`).
                obs, _, terminated, truncated, infos = groups[g].step(actions)
                for agent, index in members.items():
                    observations[g][agent] = obs[agent]
                    episode = episodes[g][agent]
                    label = None
                    if oracles[g] is not None:
                        label = oracles[g].label(last_infos[g][agent], texts[index], infos[agent])
                    last_infos[g][agent] = infos[agent]
                    episode.turns.append(
                        Turn(
                            prompts[index],
                            responses[index],
                            bool(infos[agent].get("action_valid", True)),
                            label,
                        )
                    )
                    if terminated[agent] or truncated[agent]:
                        episode.won = bool(infos[agent].get("won", False))
            self.times.env += time.perf_counter() - start
            turn += 1

        result = []
        for group, members in zip(groups, episodes, strict=True):
            for agent, record in zip(group.possible_agents, group.episodes, strict=True):
                members[agent].states, members[agent].rewards = record["states"], record["rewards"]
            result.append([members[agent] for agent in group.possible_agents])
        return result


def episode_metrics(groups: list[list[Episode]], prefix: str) -> dict[str, float]:
    """Sums and counts, so ranks can add theirs up before dividing (see `finish_metrics`)."""
    totals: dict[str, float] = {}

    def add(name: str, value: float) -> None:
        totals[name] = totals.get(name, 0.0) + value

    for group in groups:
        for episode in group:
            add("episodes", 1)
            add("success", float(episode.won))
            add("return", episode.episode_return)
            add("episode_length", len(episode.turns))
            add("invalid_actions", episode.invalid_actions)
            add("response_tokens", sum(len(t.response_ids) for t in episode.turns))
            if episode.task_type is not None:
                add(f"episodes/{episode.task_type}", 1)
                add(f"success/{episode.task_type}", float(episode.won))
    return {f"{prefix}/{name}": value for name, value in totals.items()}


def finish_metrics(totals: dict[str, float], prefix: str) -> dict[str, float]:
    """Means per episode (and per step for the invalid-action rate) from summed totals."""
    episodes = totals.get(f"{prefix}/episodes", 0.0)
    steps = totals.get(f"{prefix}/episode_length", 0.0)
    out = {f"{prefix}/episodes": episodes}
    if episodes:
        out[f"{prefix}/success"] = totals[f"{prefix}/success"] / episodes
        out[f"{prefix}/return"] = totals[f"{prefix}/return"] / episodes
        out[f"{prefix}/episode_length"] = steps / episodes
        out[f"{prefix}/response_length"] = totals[f"{prefix}/response_tokens"] / max(steps, 1)
    if steps:
        out[f"{prefix}/invalid_rate"] = totals[f"{prefix}/invalid_actions"] / steps
    for name, count in totals.items():
        head = f"{prefix}/episodes/"
        if name.startswith(head) and count:
            task_type = name[len(head) :]
            out[f"{prefix}/success/{task_type}"] = totals[f"{prefix}/success/{task_type}"] / count
    return out

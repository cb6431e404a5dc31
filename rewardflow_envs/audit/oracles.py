"""Per-env oracles of move quality, and the non-expert moves a noisy expert plays.

An oracle labels one step from the info before it, the response, and the info after it:
+1 for a good move, 0 for a neutral one, -1 for a bad one. Sokoban's oracle is the shortest
solution (does the move shorten it?); the others compare the move with the env's own expert
(`info["expert_action"]`, present when the env is made with ``expert=True``), after the env's
own parsing, so that two spellings of one command count as one move.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import gymnasium
import numpy as np

Info = Mapping[str, Any]


class Oracle:
    """Labels moves of one env and proposes the non-expert moves of a noisy expert.

    ``horizon_kwarg`` names the env's own step limit, where it has one besides Gymnasium's
    ``max_episode_steps`` (an env's expert may plan with it).
    """

    env_id: str = ""
    horizon_kwarg: str | None = None

    def __init__(self, env_kwargs: Mapping[str, Any]):
        # A private copy of the env, for what the oracle must know of a task (rooms, corpora).
        self.reference = gymnasium.make(self.env_id, **env_kwargs).unwrapped

    def start(self, task_seed: int, info: Info, options: dict | None = None) -> None:
        """Called once per group, with the reset seed and options and the reset info every
        member of the group shares."""

    def move(self, response: str) -> Hashable | None:
        """The move a response stands for, as the env reads it; None when it reads none."""
        raise NotImplementedError

    def alternatives(self, info: Info, rng: np.random.Generator) -> list[str]:
        """Valid-looking responses from this state that are not the expert's move."""
        raise NotImplementedError

    def label(self, before: Info, response: str, after: Info) -> int:
        """+1 when the env read the expert's move, else -1 (invalid responses included)."""
        expert = before.get("expert_action")
        played = self.move(response)
        if not after.get("action_valid", True) or expert is None or played is None:
            return -1
        return 1 if played == self.move(expert) else -1

    def close(self) -> None:
        self.reference.close()

    def _others(self, responses: list[str], info: Info) -> list[str]:
        expert = info.get("expert_action")
        expert_move = self.move(expert) if expert is not None else None
        return [r for r in responses if self.move(r) != expert_move]


class SokobanOracle(Oracle):
    """A move's label is how it changes the length of the shortest solution: +1 shorter,
    0 the same (a wall bump), -1 longer or no solution left (a box stuck)."""

    env_id = "RF-Sokoban-v0"
    horizon_kwarg = "max_steps"

    def __init__(self, env_kwargs: Mapping[str, Any]):
        super().__init__(env_kwargs)
        self._room = None
        self._lengths: dict[Hashable, int | None] = {}

    def start(self, task_seed: int, info: Info, options: dict | None = None) -> None:
        _, reference_info = self.reference.reset(seed=task_seed, options=options)
        if reference_info["state_key"] != info["state_key"]:
            raise RuntimeError(
                f"task {task_seed}: the oracle's room starts at {reference_info['state_key']!r}, "
                f"the group's at {info['state_key']!r}"
            )
        self.use_room(self.reference.room)

    def use_room(self, room) -> None:
        """Label moves in `room`'s walls and targets (a ``sokoban.Room``; its boxes and player
        do not matter: each state key brings its own)."""
        self._room = room
        self._lengths = {}

    def solution_length(self, state_key: Hashable) -> int | None:
        """Moves of a shortest solution from the state key `(player, boxes)`; None if none."""
        if state_key not in self._lengths:
            self._lengths[state_key] = shortest_solution_length(self._room, state_key)
        return self._lengths[state_key]

    def move(self, response: str) -> Hashable | None:
        # The expert's move and the alternatives are all strings of the env's own list.
        return response

    def alternatives(self, info: Info, rng: np.random.Generator) -> list[str]:
        return self._others(list(info["admissible_actions"]), info)

    def label(self, before: Info, response: str, after: Info) -> int:
        was = self.solution_length(before["state_key"])
        now = self.solution_length(after["state_key"])
        if now is None:
            return 0 if was is None else -1
        return int(np.sign(was - now))


def shortest_solution_length(room, state_key: Hashable) -> int | None:
    """Moves of a shortest solution of `room`'s walls and targets with the player and boxes of
    `state_key` (``info["state_key"]`` of RF-Sokoban-v0); None when no solution exists."""
    from rewardflow_envs.envs.sokoban import Room, solve

    player, boxes = state_key
    position = Room(room.shape, room.walls, room.targets, tuple(boxes), tuple(player))
    moves = solve(position)
    return None if moves is None else len(moves)


class ALFWorldOracle(Oracle):
    """The expert is ALFWorld's hand-coded one; non-expert moves are the other admissible
    commands the info lists (look, inventory and examine included)."""

    env_id = "RF-ALFWorld-v0"

    def move(self, response: str) -> Hashable | None:
        from rewardflow_envs.envs.alfworld.prompt import parse_command

        return parse_command(response)

    def alternatives(self, info: Info, rng: np.random.Generator) -> list[str]:
        return self._others([f"<action>{c}</action>" for c in info["admissible_actions"]], info)


class WebShopOracle(Oracle):
    """Non-expert moves are the page's clicks and a search for another product's title (the
    search box's placeholder filled in); ``click[search]``, which the env always refuses, is
    left out."""

    env_id = "RF-WebShop-v0"

    def __init__(self, env_kwargs: Mapping[str, Any]):
        super().__init__(env_kwargs)
        self._titles: list[str] | None = None

    def move(self, response: str) -> Hashable | None:
        from rewardflow_envs.envs.webshop import parse_action
        from rewardflow_envs.envs.webshop.site import normalise_click, normalise_query

        parsed = parse_action(response)
        if parsed is None:
            return None
        verb, argument = parsed
        return verb, normalise_query(argument) if verb == "search" else normalise_click(argument)

    def alternatives(self, info: Info, rng: np.random.Generator) -> list[str]:
        from rewardflow_envs.envs.webshop.buttons import SEARCH_BUTTON

        responses = []
        for action in info["admissible_actions"]:
            response = f"<action>{action}</action>"
            move = self.move(response)
            if move is not None and move[0] == "search":
                response = f"<action>search[{self._random_title(rng)}]</action>"
            if move != ("click", SEARCH_BUTTON):
                responses.append(response)
        return self._others(responses, info)

    def _random_title(self, rng: np.random.Generator) -> str:
        if self._titles is None:
            self._titles = [p.title for p in self.reference.catalogue.products.values()]
        return self._titles[int(rng.integers(len(self._titles)))]


class SearchOracle(Oracle):
    """Non-expert moves: `SEARCHES` searches for the titles of random passages, and one answer
    that is a random passage's title (almost always wrong), so that a quarter of them end the
    episode."""

    env_id = "RF-Search-v0"
    horizon_kwarg = "max_turns"
    SEARCHES = 3

    def move(self, response: str) -> Hashable | None:
        from rewardflow_envs.envs.search import normalize_answer
        from rewardflow_envs.envs.search.parser import Answer, Search, parse_response

        parsed = parse_response(response)
        if isinstance(parsed, Search):
            return "search", parsed.query
        if isinstance(parsed, Answer):
            return "answer", normalize_answer(parsed.text)
        return None

    def alternatives(self, info: Info, rng: np.random.Generator) -> list[str]:
        searches = [f"<search>{self._random_title(rng)}</search>" for _ in range(self.SEARCHES)]
        return self._others([*searches, f"<answer>{self._random_title(rng)}</answer>"], info)

    def _random_title(self, rng: np.random.Generator) -> str:
        passages = self.reference.dataset.passages
        return passages[int(rng.integers(len(passages)))].title


ORACLES: dict[str, type[Oracle]] = {
    oracle.env_id: oracle for oracle in (SokobanOracle, ALFWorldOracle, WebShopOracle, SearchOracle)
}


def oracle_class(env_id: str) -> type[Oracle]:
    """The oracle of `env_id` (``"RF-Sokoban-v0"`` or ``"rewardflow_envs:RF-Sokoban-v0"``)."""
    bare = bare_env_id(env_id)
    if bare not in ORACLES:
        raise ValueError(f"no oracle for env {env_id!r}; the audit knows {', '.join(ORACLES)}")
    return ORACLES[bare]


def bare_env_id(env_id: str) -> str:
    return env_id.split(":", 1)[-1]

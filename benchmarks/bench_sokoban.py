"""Reset and step throughput of RF-Sokoban-v0 against gym-sokoban 0.0.6, measured in one run.

    python benchmarks/bench_sokoban.py [--resets 2000] [--steps 100000]

Rooms are 6x6 with 1 box. RF-Sokoban-v0 is measured with both its generators: gym-sokoban's
rooms (the default), against gym-sokoban as released (its reverse play runs to depth 300,
capped at 300,000 positions), and the "bounded" rooms at search depth 30, against gym-sokoban
with its reverse play cut to depth 30. A step of ours includes
building the text prompt; a step of gym-sokoban includes its RGB observation. gym-sokoban is
optional (``pip install "rewardflow[compat]"``); without it only our numbers are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable, Iterator

import gymnasium
import numpy as np

from rewardflow_envs.envs.sokoban import ADMISSIBLE_ACTIONS

DIM_ROOM, NUM_BOXES, SEARCH_DEPTH, MAX_STEPS = (6, 6), 1, 30, 15


def time_resets(reset: Callable[[int], object], count: int) -> float:
    """Seconds per reset."""
    start = time.perf_counter()
    for index in range(count):
        reset(index)
    return (time.perf_counter() - start) / count


def time_steps(step: Callable[[int], bool], reset: Callable[[int], object], count: int) -> float:
    """Steps per second, random directions, resetting (untimed) whenever an episode ends."""
    directions = np.random.default_rng(0).integers(4, size=count).tolist()
    reset(0)
    elapsed, episodes = 0.0, 1
    for direction in directions:
        start = time.perf_counter()
        done = step(direction)
        elapsed += time.perf_counter() - start
        if done:
            reset(episodes)
            episodes += 1
    return count / elapsed


def measure_ours(resets: int, steps: int, generator: str) -> tuple[float, float]:
    env = gymnasium.make(
        "rewardflow_envs:RF-Sokoban-v0",
        dim_room=DIM_ROOM,
        num_boxes=NUM_BOXES,
        search_depth=SEARCH_DEPTH,
        max_steps=MAX_STEPS,
        generator=generator,
    )

    def step(direction: int) -> bool:
        _, _, terminated, truncated, _ = env.step(ADMISSIBLE_ACTIONS[direction])
        return terminated or truncated

    def reset(seed: int) -> object:
        return env.reset(seed=seed)

    return time_resets(reset, resets), time_steps(step, reset, steps)


@contextlib.contextmanager
def gym_sokoban_reverse_depth(room_utils, depth: int | None) -> Iterator[None]:
    """Cut gym-sokoban's reverse-play search to `depth` moves (None: leave it as released)."""
    original = room_utils.depth_first_search
    if depth is not None:

        def capped(
            room_state, room_structure, box_mapping, box_swaps=0, last_pull=(-1, -1), ttl=300
        ):
            # Its search spends one unit of ttl on entry, so depth d needs ttl d + 1.
            ttl = min(ttl, depth + 1)
            return original(room_state, room_structure, box_mapping, box_swaps, last_pull, ttl)

        room_utils.depth_first_search = capped
    try:
        yield
    finally:
        room_utils.depth_first_search = original


def measure_gym_sokoban(resets: int, steps: int, depth: int | None) -> tuple[float, float]:
    from gym_sokoban.envs import room_utils
    from gym_sokoban.envs.sokoban_env import SokobanEnv

    env = SokobanEnv(dim_room=DIM_ROOM, max_steps=MAX_STEPS, num_boxes=NUM_BOXES, reset=False)

    def step(direction: int) -> bool:
        return env.step(direction + 1)[2]  # its push actions 1-4: up, down, left, right

    def reset(_seed: int) -> object:
        return env.reset()

    with gym_sokoban_reverse_depth(room_utils, depth):
        return time_resets(reset, resets), time_steps(step, reset, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resets", type=int, default=2000, help="resets of RF-Sokoban-v0")
    parser.add_argument("--steps", type=int, default=100_000, help="steps of RF-Sokoban-v0")
    parser.add_argument("--gym-resets", type=int, default=200, help="resets of gym-sokoban")
    parser.add_argument("--gym-steps", type=int, default=2_000, help="steps of gym-sokoban")
    args = parser.parse_args()

    print(f"{DIM_ROOM[0]}x{DIM_ROOM[1]} rooms, {NUM_BOXES} box, one process")
    ours = {
        "gym-sokoban": ("RF-Sokoban-v0, gym-sokoban rooms", None),
        "bounded": (f"RF-Sokoban-v0, bounded, depth {SEARCH_DEPTH}", SEARCH_DEPTH),
    }
    rows = {key: (label, *measure_ours(args.resets, args.steps, key)) for key, (label, _) in
            ours.items()}  # fmt: skip
    theirs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import gym_sokoban  # noqa: F401
        except ImportError as error:
            print(f'gym-sokoban is not installed ({error}); pip install "rewardflow[compat]"')
        else:
            for key, (_, depth) in ours.items():
                label = "as released" if depth is None else f"depth {depth}"
                measured = measure_gym_sokoban(args.gym_resets, args.gym_steps, depth)
                theirs[key] = (f"gym-sokoban 0.0.6, {label} (rgb)", *measured)

    print(f"{'':40} {'ms/reset':>10} {'resets/s':>10} {'steps/s':>10}")
    for label, seconds_per_reset, steps_per_second in [*rows.values(), *theirs.values()]:
        print(
            f"{label:40} {seconds_per_reset * 1e3:10.3f} {1 / seconds_per_reset:10.0f} "
            f"{steps_per_second:10.0f}"
        )
    for key, (label, their_reset, their_step) in theirs.items():
        our_label, our_reset, our_step = rows[key]
        print(
            f"{our_label} vs {label}: reset {their_reset / our_reset:.1f}x faster, "
            f"step {our_step / their_step:.1f}x faster"
        )


if __name__ == "__main__":
    main()

"""Room generation in the family of gym-sokoban: random-walk topology, then reverse play.

1. Topology: a random walk carves floor out of a walled rectangle, stamping one of five small
   masks at every step (gym-sokoban's scheme: 1.7 * (height + width) steps, a 35% chance to turn).
2. Targets are drawn on the floor and the boxes start on them: the solved position.
3. Reverse play: breadth-first over moves and pulls from the solved position, with the player
   anywhere on the free floor, up to `search_depth` moves (and never beyond `max_moves`). Every
   position at depth d is solvable in exactly d moves. Among the positions with no box on a
   target, the one whose boxes moved farthest from their own targets (total Manhattan
   displacement) is the start; ties are broken by the random generator.

A topology that allows no such position is dropped and a new one drawn from the same generator,
so the room depends on the generator's state only.
"""

from __future__ import annotations

import numpy as np

from rewardflow_envs.envs.sokoban.room import Room

TURN_PROBABILITY = 0.35
# Floor stamps applied around each position of the walk, as in gym-sokoban.
WALK_MASKS = np.array(
    [
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[0, 0, 0], [1, 1, 0], [0, 1, 0]],
        [[0, 0, 0], [1, 1, 0], [1, 1, 0]],
        [[0, 0, 0], [0, 1, 1], [0, 1, 0]],
    ],
    dtype=bool,
)
WALK_DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1))
# Reverse play stops expanding once this many positions are known, bounding big rooms.
MAX_REVERSE_STATES = 200_000
MAX_TOPOLOGY_TRIES = 1_000


def generate_room(
    rng: np.random.Generator,
    dim_room: tuple[int, int] = (6, 6),
    num_boxes: int = 1,
    search_depth: int = 30,
    max_moves: int | None = None,
) -> Room:
    """A random room solvable in at most min(search_depth, max_moves) moves, drawn from `rng`.

    Raises ValueError when no room can be made (a room too small for `num_boxes` boxes).
    """
    depth = search_depth if max_moves is None else min(search_depth, max_moves)
    if depth < 1:
        raise ValueError(f"search_depth and max_moves must be at least 1, got depth {depth}")
    height, width = dim_room
    for _ in range(MAX_TOPOLOGY_TRIES):
        floor = _random_walk_floor(rng, dim_room).ravel()
        floor_cells = np.flatnonzero(floor)
        if len(floor_cells) < num_boxes + 2:
            continue
        targets = sorted(floor_cells[rng.choice(len(floor_cells), size=num_boxes, replace=False)])
        start = _reverse_play(rng, (~floor).tolist(), width, [int(t) for t in targets], depth)
        if start is not None:
            player, boxes = start
            return Room.from_flat((height, width), floor.tolist(), targets, boxes, player)
    raise ValueError(
        f"could not generate a {height}x{width} room with {num_boxes} box(es) in "
        f"{MAX_TOPOLOGY_TRIES} tries; use a larger dim_room or fewer boxes"
    )


def _random_walk_floor(rng: np.random.Generator, dim_room: tuple[int, int]) -> np.ndarray:
    height, width = dim_room
    steps = int(1.7 * (height + width))
    # All draws at once: one generator call per kind rather than one per step.
    first_direction, row, col = rng.integers([0, 1, 1], [4, height - 1, width - 1]).tolist()
    turns = (rng.random(steps) < TURN_PROBABILITY).tolist()
    new_directions = rng.integers(4, size=steps).tolist()
    masks = rng.integers(len(WALK_MASKS), size=steps).tolist()
    floor = np.zeros(dim_room, dtype=bool)
    direction = WALK_DIRECTIONS[first_direction]
    for step in range(steps):
        if turns[step]:
            direction = WALK_DIRECTIONS[new_directions[step]]
        row = min(max(row + direction[0], 1), height - 2)
        col = min(max(col + direction[1], 1), width - 2)
        floor[row - 1 : row + 2, col - 1 : col + 2] |= WALK_MASKS[masks[step]]
    floor[[0, -1], :] = False
    floor[:, [0, -1]] = False
    return floor


def _reverse_play(
    rng: np.random.Generator, is_wall: list[bool], width: int, targets: list[int], depth: int
) -> tuple[int, tuple[int, ...]] | None:
    """The most displaced start (flat player, flat boxes) within `depth` reverse moves.

    None if no position with every box off its target is reachable. Boxes keep their identity
    (box i starts on target i) so that displacement is measured from each box's own target, the
    way gym-sokoban scores its reverse play.
    """
    offsets = (-width, width, -1, 1)
    target_set = set(targets)
    target_rows_cols = [divmod(target, width) for target in targets]
    solved = tuple(targets)
    # Positions are (player, boxes in target order); `seen` holds them with boxes sorted.
    frontier = [
        (cell, solved)
        for cell in range(len(is_wall))
        if not is_wall[cell] and cell not in target_set
    ]
    seen = set(frontier)
    best_score, best = 0, []
    for _ in range(depth):
        next_frontier = []
        for player, boxes in frontier:
            for offset in offsets:
                ahead = player + offset
                if is_wall[ahead] or ahead in boxes:
                    continue
                behind = player - offset
                successors = [boxes]
                if behind in boxes:  # pull the box behind the player along
                    successors.append(tuple(player if box == behind else box for box in boxes))
                for next_boxes in successors:
                    key = (ahead, tuple(sorted(next_boxes)))
                    if key in seen:
                        continue
                    seen.add(key)
                    next_frontier.append((ahead, next_boxes))
                    if not target_set.isdisjoint(next_boxes):
                        continue
                    score = 0
                    for box, (target_row, target_col) in zip(
                        next_boxes, target_rows_cols, strict=True
                    ):
                        box_row, box_col = divmod(box, width)
                        score += abs(box_row - target_row) + abs(box_col - target_col)
                    if score > best_score:
                        best_score, best = score, [(ahead, next_boxes)]
                    elif score == best_score:
                        best.append((ahead, next_boxes))
        frontier = next_frontier
        if not frontier or len(seen) >= MAX_REVERSE_STATES:
            break
    if not best:
        return None
    return best[int(rng.integers(len(best)))]

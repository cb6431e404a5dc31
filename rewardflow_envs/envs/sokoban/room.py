"""A Sokoban position as an immutable value, its text form, and the flat-index layout.

Cells are (row, column) with row 0 at the top. The hot loops (moves, solver, generator) work on
flat indices ``row * width + column`` with plain Python lists: one cell at a time, that is
several times faster than indexing numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Cell = tuple[int, int]

DIRECTIONS = ("up", "down", "left", "right")

WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#_OX√PS"
LEGEND = (
    f"{WALL} wall, {FLOOR} floor, {TARGET} target, {BOX} box, {BOX_ON_TARGET} box on target, "
    f"{PLAYER} player, {PLAYER_ON_TARGET} player on target"
)


@dataclass(frozen=True)
class Room:
    """Walls, targets, boxes and the player of a rectangular room closed by walls.

    `walls`, `targets` and `boxes` are stored as sorted tuples of cells, so equal positions
    are equal Rooms. A room has as many boxes as targets (at least one); the player and the
    boxes stand on distinct non-wall cells.
    """

    shape: tuple[int, int]
    walls: tuple[Cell, ...]
    targets: tuple[Cell, ...]
    boxes: tuple[Cell, ...]
    player: Cell

    def __post_init__(self) -> None:
        for name in ("walls", "targets", "boxes"):
            object.__setattr__(self, name, tuple(sorted(getattr(self, name))))
        height, width = self.shape
        if height < 3 or width < 3:
            raise ValueError(f"a room is at least 3x3 cells, got {height}x{width}")
        walls = set(self.walls)
        border = {(r, c) for r in range(height) for c in range(width)}
        border -= {(r, c) for r in range(1, height - 1) for c in range(1, width - 1)}
        if not border <= walls:
            raise ValueError("the room must be closed: every border cell has to be a wall")
        if not self.targets or len(self.boxes) != len(self.targets):
            raise ValueError(
                f"a room needs as many boxes as targets, at least one "
                f"(got {len(self.boxes)} boxes, {len(self.targets)} targets)"
            )
        movable = [*self.boxes, self.player]
        if len(set(movable)) != len(movable):
            raise ValueError("the player and the boxes must stand on distinct cells")
        for cell in [*movable, *self.targets]:
            if cell in walls or not (0 <= cell[0] < height and 0 <= cell[1] < width):
                raise ValueError(f"cell {cell} is a wall or outside the {height}x{width} room")

    @classmethod
    def from_flat(
        cls,
        shape: tuple[int, int],
        is_floor: Iterable[bool],
        targets: Iterable[int],
        boxes: Iterable[int],
        player: int,
    ) -> Room:
        """The room of a flat layout (cell ``row * width + column``): the floor mask and the
        flat cells of the targets, the boxes and the player."""
        width = shape[1]
        return cls(
            shape=shape,
            walls=tuple(divmod(cell, width) for cell, floor in enumerate(is_floor) if not floor),
            targets=tuple(divmod(int(cell), width) for cell in targets),
            boxes=tuple(divmod(int(cell), width) for cell in boxes),
            player=divmod(int(player), width),
        )

    @classmethod
    def from_text(cls, text: str) -> Room:
        """Parse a grid written with the legend symbols (``#_OX√PS``), one line per row."""
        if not isinstance(text, str):
            raise TypeError(f"a room grid is a string, got {type(text).__name__}")
        rows = [line.strip() for line in text.strip().splitlines()]
        if not rows or len({len(row) for row in rows}) != 1:
            raise ValueError("a room grid needs non-empty rows of equal length")
        walls, targets, boxes, players = [], [], [], []
        for r, row in enumerate(rows):
            for c, symbol in enumerate(row):
                cell = (r, c)
                if symbol == WALL:
                    walls.append(cell)
                elif symbol in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                    targets.append(cell)
                elif symbol not in (FLOOR, BOX, PLAYER):
                    raise ValueError(f"unknown symbol {symbol!r} at {cell}; legend: {LEGEND}")
                if symbol in (BOX, BOX_ON_TARGET):
                    boxes.append(cell)
                elif symbol in (PLAYER, PLAYER_ON_TARGET):
                    players.append(cell)
        if len(players) != 1:
            raise ValueError(f"a room needs exactly one player, found {len(players)}")
        return cls(
            (len(rows), len(rows[0])), tuple(walls), tuple(targets), tuple(boxes), players[0]
        )

    @property
    def won(self) -> bool:
        return set(self.boxes) == set(self.targets)

    def state_key(self) -> tuple[Cell, tuple[Cell, ...]]:
        """(player, sorted boxes): the whole movable state, since walls and targets never change."""
        return self.player, tuple(sorted(self.boxes))

    def to_text(self) -> str:
        layout = FlatLayout(self)
        return layout.grid_text(layout.index(self.player), [layout.index(b) for b in self.boxes])


class FlatLayout:
    """The fixed part of a room (walls, targets) indexed by flat cell index."""

    def __init__(self, room: Room) -> None:
        height, width = room.shape
        self.room = room
        self.width = width
        self.size = height * width
        self.is_wall = [False] * self.size
        self.is_target = [False] * self.size
        for cell in room.walls:
            self.is_wall[self.index(cell)] = True
        for cell in room.targets:
            self.is_target[self.index(cell)] = True
        self.targets = frozenset(self.index(cell) for cell in room.targets)
        # Offsets in DIRECTIONS order: up, down, left, right.
        self.offsets = (-width, width, -1, 1)
        self.cells = [divmod(index, width) for index in range(self.size)]
        # The fixed symbols, which grid_text overlays with boxes and player. The last cell of a
        # row is a border wall, never overlaid, so it can carry the row's newline.
        self._base_symbols = [
            WALL if self.is_wall[index] else TARGET if self.is_target[index] else FLOOR
            for index in range(self.size)
        ]
        for row in range(height - 1):
            self._base_symbols[row * width + width - 1] += "\n"

    def index(self, cell: Cell) -> int:
        return cell[0] * self.width + cell[1]

    def grid_text(self, player: int, boxes: Iterable[int]) -> str:
        """The grid in the legend symbols, one line per row, for flat player and box indices."""
        symbols = self._base_symbols.copy()
        for box in boxes:
            symbols[box] = BOX_ON_TARGET if self.is_target[box] else BOX
        symbols[player] = PLAYER_ON_TARGET if self.is_target[player] else PLAYER
        return "".join(symbols)

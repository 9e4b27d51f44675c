"""A tile-grid map of Iran's 31 provinces (one square per province, placed roughly where the
province lies: west on the left, north at the top, as on any map — a map is not mirrored for RTL).

Positions were laid out for zistboom from the provinces' relative locations and borders
(:mod:`zistboom.registry.borders`); the test suite checks every province appears exactly once.
"""

from __future__ import annotations

# code -> (column from the west, row from the north)
TILES: dict[str, tuple[int, int]] = {
    "IR-04": (0, 0), "IR-03": (1, 0), "IR-24": (2, 0),
    "IR-12": (0, 1), "IR-19": (1, 1), "IR-01": (2, 1), "IR-02": (3, 1), "IR-27": (4, 1), "IR-28": (5, 1),
    "IR-05": (0, 2), "IR-13": (1, 2), "IR-26": (2, 2), "IR-30": (3, 2), "IR-23": (4, 2), "IR-20": (5, 2), "IR-09": (6, 2),
    "IR-16": (0, 3), "IR-15": (1, 3), "IR-00": (2, 3), "IR-25": (3, 3), "IR-10": (4, 3), "IR-21": (5, 3), "IR-29": (6, 3),
    "IR-06": (1, 4), "IR-14": (2, 4), "IR-17": (3, 4), "IR-07": (4, 4), "IR-08": (5, 4), "IR-11": (6, 4),
    "IR-18": (3, 5), "IR-22": (5, 5),
}
COLS = 1 + max(c for c, _ in TILES.values())
ROWS = 1 + max(r for _, r in TILES.values())

"""Draw the factor graph of one model of each family into docs/figures/ (run by ``make docs``).

Each picture is ``Graph.draw`` of a small instance: blocks as circles (name, unit type, size),
factors as squares, one edge per block a factor touches.
"""

from __future__ import annotations

from pathlib import Path

import ebm

OUT = Path(__file__).resolve().parent / "figures"

MODELS = {
    "rbm": lambda: ebm.models.rbm(784, 500),
    "higher-order": lambda: ebm.models.higher_order_bm(4),
    "gated-rbm": lambda: ebm.models.gated_rbm(169, 169, 100, 200),
    "fcrbm": lambda: ebm.models.fcrbm(20, 50, 2, 4, 30),
    "mcrbm": lambda: ebm.models.mcrbm(36, 64, 16, 64),
    "dbm": lambda: ebm.models.dbm([784, 500, 1000]),
    "pohmm": lambda: ebm.models.pohmm(3, 4, 8, emission="categorical", symbols=3),
    "student-t": lambda: ebm.models.fas(40, 40),
    "upoe": lambda: ebm.models.upoe(16, 4),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in MODELS.items():
        path = build().graph.draw(OUT / f"{name}.png")
        print(path)


if __name__ == "__main__":
    main()

"""Regenerates the README figures in docs/img/: `python docs/make_figures.py` (needs `dot`).

- sharpsepconv_darts.svg: both cells of the SHARPSEPCONV_DARTS genotype.
- cosine_power_annealing.svg / cosine_power_annealing_log.svg: the ImageNet-like schedule
  (300 epochs, max lr 0.0875, min lr 7.5e-4, 10 warmup epochs) for exponent orders 2 and 10,
  against cosine annealing and exponential decay, on linear and log scales.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from sharpdarts.core import genotypes  # noqa: E402
from sharpdarts.face.plots import cells, curves  # noqa: E402

IMG = HERE / "img"
LR = dict(epochs=300, max_lr=0.0875, min_lr=7.5e-4, exponent_orders=[2, 10], warmup_epochs=10)


def main() -> list[Path]:
    written = [
        cells.plot_genotype(
            genotypes.get("SHARPSEPCONV_DARTS"),
            IMG / "sharpsepconv_darts.svg",
            title="SHARPSEPCONV_DARTS",
        ),
        curves.plot_lr(IMG / "cosine_power_annealing.svg", **LR),
        curves.plot_lr(IMG / "cosine_power_annealing_log.svg", log=True, **LR),
    ]
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()

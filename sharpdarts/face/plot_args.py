"""The ``sharpdarts plot`` command: its arguments and one function per kind of picture.

Each command imports its plotting module when it runs, so that ``--help`` and the other
commands do not pay for matplotlib or torch.
"""

from __future__ import annotations

from pathlib import Path

from sharpdarts.errors import UserError


def _run_folder(name: str, results: str) -> Path:
    """A run folder named by its path, run id or ``run:ID``."""
    from sharpdarts.store import store

    return store.find_run(results, name).path


def cmd_plot_genotype(args) -> int:
    from sharpdarts.face.plots import cells
    from sharpdarts.store import genotype_store

    genotype, _ = genotype_store.genotype_of(args.name, args.results, args.best)
    written = cells.plot_genotype(genotype, args.out, separate=args.separate, title=args.title)
    print("\n".join(str(p) for p in (written if isinstance(written, list) else [written])))
    return 0


def cmd_plot_lr(args) -> int:
    from sharpdarts.face.plots import curves

    print(
        curves.plot_lr(
            args.out,
            args.epochs,
            args.max_lr,
            args.min_lr,
            args.exponent_order,
            warmup_epochs=args.warmup_epochs,
            log=args.log,
        )
    )
    return 0


def cmd_plot_curves(args) -> int:
    from sharpdarts.face.plots import curves

    print(curves.plot_curves([_run_folder(r, args.results) for r in args.runs], args.out))
    return 0


def cmd_plot_collapse(args) -> int:
    from sharpdarts.face.plots import collapse

    print(collapse.plot_collapse([_run_folder(r, args.results) for r in args.runs], args.out))
    return 0


def cmd_plot_alphas(args) -> int:
    from sharpdarts.face.plots import alphas

    print(alphas.plot_alphas(_run_folder(args.run, args.results), args.out))
    return 0


def cmd_plot_grid(args) -> int:
    from sharpdarts.face.plots import grid

    try:
        source = _run_folder(args.source, args.results)
    except UserError:
        source = args.source  # a raw-weights genotype name
    print(grid.plot_grid(source, args.out))
    return 0


def cmd_plot_progress(args) -> int:
    from sharpdarts.face.plots import progress  # cells only: no torch

    progress.check_out(args.out)  # a bad suffix fails before the run is looked up
    print(
        progress.plot_progress(
            _run_folder(args.run, args.results),
            args.out,
            every=args.every,
            duration_ms=args.duration,
            frames_dir=args.frames,
        )
    )
    return 0


def add_plot_parser(sub, default_results: str) -> None:
    """Adds ``plot`` and its kinds of picture to the ``sharpdarts`` subcommands ``sub``."""
    p = sub.add_parser(
        "plot",
        help="figures: genotype cells, lr schedules, curves, collapse, alphas, grid, progress",
    )
    psub = p.add_subparsers(dest="plot_command", required=True)
    g = psub.add_parser("genotype", help="the cells of a genotype or a search run (graphviz)")
    g.add_argument("name", help="a genotype name, a run id or a run folder")
    g.add_argument("--out", required=True, help="output file: .svg, .pdf or .png")
    g.add_argument("--separate", action="store_true", help="one file per cell")
    g.add_argument("--best", action="store_true", help="a search run's best-validation genotype")
    g.add_argument("--title", default=None)
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_genotype)
    g = psub.add_parser("lr", help="cosine power annealing vs cosine and exponential curves")
    g.add_argument("--epochs", type=int, required=True)
    g.add_argument("--max_lr", type=float, required=True)
    g.add_argument("--min_lr", type=float, required=True)
    g.add_argument(
        "--exponent_order",
        type=float,
        nargs="+",
        default=[10.0],
        help="one or more exponent orders (one curve each)",
    )
    g.add_argument("--warmup_epochs", type=int, default=None)
    g.add_argument("--log", action="store_true", help="logarithmic y axis")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_plot_lr)
    g = psub.add_parser("curves", help="accuracy, loss and lr per epoch of runs (seeds banded)")
    g.add_argument("runs", nargs="+", help="run ids or run folders")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_curves)
    g = psub.add_parser(
        "collapse", help="searches' Hessian eigenvalue, skip connections and op entropy per epoch"
    )
    g.add_argument("runs", nargs="+", help="search run ids or run folders")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_collapse)
    g = psub.add_parser("alphas", help="a search run's architecture weights per edge and op")
    g.add_argument("run", help="a run id or run folder")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_alphas)
    g = psub.add_parser("grid", help="a multi-channel search's grid weights and chosen path")
    g.add_argument("source", help="a multi-channel search run, or MULTI_CHANNEL_MAX_W / _SCALAR")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_grid)
    g = psub.add_parser("progress", help="a search's most likely cells per epoch (animated GIF)")
    g.add_argument("run", help="a search run id or run folder (convolutional or recurrent)")
    g.add_argument("--out", required=True, help="output file: .gif")
    g.add_argument(
        "--every",
        type=int,
        default=None,
        metavar="N",
        help="one frame per N recorded epochs, and the last (default: every epoch, "
        "at most 100 frames)",
    )
    g.add_argument("--duration", type=int, default=600, metavar="MS", help="ms per frame")
    g.add_argument("--frames", default=None, metavar="DIR", help="also one PNG per frame in DIR")
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_plot_progress)


# ---- The parser -----------------------------------------------------------------------------

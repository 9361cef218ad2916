"""The ``sharpdarts genotype`` commands: show, list, promote and random.

A registry name belongs to one search space: ``darts`` (the DARTS family's cells, weights, paths
and recurrent cells) or ``nb201`` (NAS-Bench-201 cells, kept as the benchmark's arch strings).
Both are promoted, shown and listed alike, with the lineage of the search run they came from.
None of these commands imports torch.
"""

from __future__ import annotations

import json

from sharpdarts.core import genotypes
from sharpdarts.core.recurrent_genotypes import RECURRENT_GENOTYPES
from sharpdarts.errors import UserError, one_line


def _stored(genotype) -> object:
    """What JSON shows of a genotype: an arch string as it is, any other as its dict."""
    return genotype if isinstance(genotype, str) else genotypes.to_dict(genotype)


def cmd_genotype_show(args) -> int:
    from sharpdarts.store import genotype_store

    genotype, lineage = genotype_store.genotype_of(args.name, args.results, args.best)
    shown = {
        "genotype": _stored(genotype),
        "space": genotypes.space_of(genotype),
        "lineage": lineage,
    }
    print(json.dumps(shown, indent=1))
    return 0


def _origin(name: str) -> str:
    """Where a name's genotype came from, in a few words."""
    if genotypes.is_builtin(name):
        return "builtin"
    lineage = genotypes.lineage(name) or {}
    if lineage.get("run_id"):
        epoch = f", epoch {lineage['epoch']}" if lineage.get("epoch") is not None else ""
        return f"promoted from {lineage['run_id']} ({lineage.get('experiment')}{epoch})"
    if lineage.get("random"):
        return f"random (seed {lineage.get('seed')})"
    return "promoted"


def cmd_genotype_list(args) -> int:
    rows = []
    for name in sorted(set(genotypes.names()) | set(RECURRENT_GENOTYPES)):
        try:
            genotype = genotypes.get(name)
        except ValueError as exc:  # a malformed entry is listed, not fatal
            rows.append((name, "?", "?", one_line(exc)))
            continue
        space = genotypes.space_of(genotype)
        if args.space and space != args.space:
            continue
        layout = "arch" if space == "nb201" else getattr(genotype, "layout", "recurrent")
        rows.append((name, space, layout, _origin(name)))
    if rows:
        width = max(len(r[0]) for r in rows)
        for name, space, layout, origin in rows:
            print(f"{name:<{width}}  {space:<6} {layout:<11} {origin}")
    return 0


def cmd_genotype_promote(args) -> int:
    from sharpdarts.store import genotype_store

    genotype, lineage = genotype_store.genotype_of(args.run, args.results, args.best)
    if not lineage or "run_id" not in lineage:
        raise UserError(f"'{args.run}' is a builtin genotype, not a run; promote a search run.")
    try:
        genotype_store.promote(args.name, genotype, lineage, replace=args.replace)
    except ValueError as exc:
        raise UserError(f"Cannot promote as {args.name}: {one_line(exc)}") from None
    print(
        f"promoted {lineage['run_id']} (epoch {lineage['epoch']}, "
        f"{genotypes.space_of(genotype)} space) as {args.name} in "
        f"{genotypes.user_registry_path()}"
    )
    return 0


def cmd_genotype_random(args) -> int:
    from sharpdarts.core.random_genotypes import sample_cell_genotype
    from sharpdarts.store import genotype_store

    try:
        genotype = sample_cell_genotype(args.seed, args.primitives)
        lineage = {"random": True, "seed": args.seed, "primitives": args.primitives}
        genotype_store.promote(args.name, genotype, lineage, replace=args.replace)
    except (KeyError, ValueError) as exc:
        raise UserError(f"Cannot add a random cell as {args.name}: {one_line(exc)}") from None
    print(
        f"sampled a random {args.primitives} cell (seed {args.seed}) as {args.name} in "
        f"{genotypes.user_registry_path()}"
    )
    return 0


def add_genotype_parser(sub, default_results: str) -> None:
    """Adds ``genotype`` and its commands to the ``sharpdarts`` subcommands ``sub``."""
    p = sub.add_parser("genotype", help="show, list or promote genotypes")
    gsub = p.add_subparsers(dest="genotype_command", required=True)
    g = gsub.add_parser("show", help="a registry genotype or a run's genotype, with its lineage")
    g.add_argument("name", help="a genotype name, a run id or a run folder")
    g.add_argument("--best", action="store_true", help="a search run's best-validation genotype")
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_genotype_show)
    g = gsub.add_parser("list", help="every registry name with its search space and origin")
    g.add_argument(
        "--space", choices=sorted(genotypes.SPACES), default=None, help="only this space's names"
    )
    g.set_defaults(func=cmd_genotype_list)
    g = gsub.add_parser("promote", help="add a search run's genotype to experiments/genotypes.json")
    g.add_argument("run", help="a run id or run folder")
    g.add_argument("name", help="the registry name (letters, digits, underscores)")
    g.add_argument("--best", action="store_true", help="promote the best-validation genotype")
    g.add_argument(
        "--replace", action="store_true", help="replace a promoted genotype of that name"
    )
    g.add_argument("--results", default=default_results)
    g.set_defaults(func=cmd_genotype_promote)
    g = gsub.add_parser(
        "random",
        help="add a random cell of a search space (a baseline) to experiments/genotypes.json",
    )
    g.add_argument("name", help="the registry name (letters, digits, underscores)")
    g.add_argument("--seed", type=int, default=0, help="fixes the draw")
    g.add_argument("--primitives", default="DARTS_PRIMITIVES", help="a primitive set name")
    g.add_argument("--replace", action="store_true", help="replace a genotype of that name")
    g.set_defaults(func=cmd_genotype_random)


__all__ = ["add_genotype_parser"]

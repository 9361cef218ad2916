"""``sharpdarts diff A B``: what differs between two experiments, two runs, or a run and its
experiment, binding by binding.

Each side is an *operative config*: every parameter that the built experiment actually reads,
defaults included (gin's ``operative_config_str``). A run has it in its folder
(``operative_config.gin``, written when it started training); an experiment's is computed by
building it as ``sharpdarts run`` would, on a few synthetic images of its dataset's shape (the
dataset bindings are then put back to the experiment's own). The bindings are compared as
written by gin (``scope/selector.param = value``): added (only in B), removed (only in A) and
changed. For runs, the commit and dirty state of each are shown too, since the same bindings
at two commits may still differ in code.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sharpdarts.core import run_folder
from sharpdarts.errors import UserError
from sharpdarts.store import reader

_BINDING = re.compile(r"^([A-Za-z_][\w./]*)\s*=\s*(.*)$")


def parse_bindings(text: str) -> dict[str, str]:
    """``{binding: value text}`` of a gin config as gin writes it: comments dropped, values
    continued on indented lines joined, runs of spaces collapsed."""
    out: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if raw[:1] in (" ", "\t") and key is not None:  # a value continued
            out[key] = (out[key].rstrip(" \\") + " " + line.strip()).strip()
            continue
        if line.startswith("import "):
            out[line] = ""
            key = None
            continue
        match = _BINDING.match(line)
        if match is None:
            raise UserError(f"Cannot read the gin line {line!r}.")
        key = match[1]
        out[key] = match[2].strip()
    return {k: " ".join(v.rstrip("\\").split()) for k, v in out.items()}


@dataclass
class Side:
    """One side of a diff: its description, its bindings and, for a run, its provenance."""

    label: str
    bindings: dict[str, str]
    git: dict = field(default_factory=dict)
    experiment: str | None = None
    is_run: bool = False


def _run_side(folder: Path) -> Side:
    info = reader.read_info(folder)
    path = run_folder.operative_config_path(folder)
    if not path.is_file():
        raise UserError(f"The run in {folder} has no {path.name} (it never started training).")
    git = info.get("git") if isinstance(info.get("git"), dict) else {}
    label = (
        f"run {info.get('run_id') or folder.name} ({info.get('experiment')}, seed "
        f"{info.get('seed')}, {info.get('status')})"
    )
    return Side(label, parse_bindings(path.read_text()), git, info.get("experiment"), True)


def experiment_operative_config(name: str) -> str:
    """The operative config of an experiment, from building it (torch) on synthetic images."""
    import gin

    from sharpdarts.engine.data import bundle
    from sharpdarts.face import runner

    with tempfile.TemporaryDirectory() as results:
        configured = runner.configure(name, [], False, results)
        own = {
            k: v
            for k, v in parse_bindings(gin.config_str()).items()
            if k.startswith("build_datasets.")
        }
        runner._apply_smoke()
        gin.bind_parameter("build_datasets.synthetic_size", (4, 4))
        runner._build(configured.job, seed=0, data=bundle.build_datasets())
        text = gin.operative_config_str()
    # The dataset as the experiment names it, not the synthetic stand-in.
    bindings = {
        k: v for k, v in parse_bindings(text).items() if not k.startswith("build_datasets.")
    }
    lines = [f"{k} = {v}" for k, v in {**bindings, **own}.items()]
    return "\n".join(lines) + "\n"


def _experiment_side(name: str) -> Side:
    from sharpdarts.face import experiments

    experiment, _ = experiments.resolve_experiment(name)
    return Side(
        f"experiment {experiment} (operative config computed from its .gin)",
        parse_bindings(experiment_operative_config(experiment)),
        experiment=experiment,
    )


def resolve(name: str, results: str) -> Side:
    """A side named by a run (id, prefix, ``run:ID`` or folder) or an experiment (name or .gin).

    Raises:
        UserError: neither a run nor an experiment.
    """
    from sharpdarts.face import experiments
    from sharpdarts.store import store

    if name.startswith("run:") or run_folder.has_run_json(name):
        return _run_side(store.find_run(results, name).path)
    try:
        experiments.resolve_experiment(name)
    except UserError as not_experiment:
        try:
            run = store.find_run(results, name)
        except UserError:
            raise UserError(
                f"{name!r} is neither an experiment nor a run under {results}: {not_experiment}"
            ) from None
        return _run_side(run.path)
    return _experiment_side(name)


def compare(a: dict[str, str], b: dict[str, str]) -> dict[str, list]:
    """``{"added": [(k, v)], "removed": [(k, v)], "changed": [(k, va, vb)]}``, sorted by key."""
    return {
        "added": [(k, b[k]) for k in sorted(b.keys() - a.keys())],
        "removed": [(k, a[k]) for k in sorted(a.keys() - b.keys())],
        "changed": [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]],
    }


def _provenance(side: Side) -> str:
    if not side.git:
        return ""
    commit = (side.git.get("commit") or "unknown")[:12]
    dirty = side.git.get("dirty")
    state = "dirty" if dirty else ("clean" if dirty is False else "dirty state unknown")
    return f"\n   commit {commit} ({state})"


def render(a: Side, b: Side) -> str:
    """The diff as text (see the module docstring)."""
    found = compare(a.bindings, b.bindings)
    lines = [f"A: {a.label}{_provenance(a)}", f"B: {b.label}{_provenance(b)}"]
    if a.git and b.git:
        same = a.git.get("commit") == b.git.get("commit")
        lines.append(
            f"commits: {'the same' if same else 'differ'}"
            + (", and a tree was dirty" if a.git.get("dirty") or b.git.get("dirty") else "")
        )
    if not any(found.values()):
        lines.append(f"no binding differs ({len(a.bindings)} bindings)")
        return "\n".join(lines) + "\n"
    if found["changed"]:
        lines.append(f"changed ({len(found['changed'])}):")
        lines += [f"  {k}: {va}  ->  {vb}" for k, va, vb in found["changed"]]
    if found["added"]:
        lines.append(f"added, only in B ({len(found['added'])}):")
        lines += [f"  + {k} = {v}" for k, v in found["added"]]
    if found["removed"]:
        lines.append(f"removed, only in A ({len(found['removed'])}):")
        lines += [f"  - {k} = {v}" for k, v in found["removed"]]
    return "\n".join(lines) + "\n"


def cmd_diff(args) -> int:
    """``sharpdarts diff A [B]``: B defaults to A's experiment when A is a run."""
    a = resolve(args.a, args.results)
    if args.b is None:
        if not a.is_run or a.experiment is None:
            raise UserError(
                "Give two experiments or runs; one argument must be a run, "
                "compared with its own experiment."
            )
        b = _experiment_side(a.experiment)
    else:
        b = resolve(args.b, args.results)
    print(render(a, b), end="")
    return 0

"""Tests for sharpdarts.genotypes: registry, primitive sets, parse_cell, JSON, promotion."""

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from spawning import start_forked  # tests/spawning.py

from sharpdarts.core import genotype_types
from sharpdarts.core import genotypes as G
from sharpdarts.store import genotype_store

REF = json.loads(resources.files("sharpdarts").joinpath("reference/genotypes.json").read_text())
CELL_NAMES = sorted(REF["cell_genotypes"])
RAW_NAMES = sorted(REF["raw_weight_genotypes"])
PATH_NAMES = sorted(REF["multichannel_paths"])
EDGE_NAMES = sorted(REF["edge_genotypes"])  # FairDARTS' cells: tests/test_fair_cells.py
ALIASES = REF["aliases"]


@pytest.fixture(autouse=True)
def empty_user_registry(tmp_path, monkeypatch):
    """Every test sees an empty user registry of its own, never the repository's file."""
    path = tmp_path / "registry" / "genotypes.json"
    monkeypatch.setenv(G.ENV_VAR, str(path))
    return path


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_genotypes_resolve_as_published(name):
    g = G.get(name)
    d = REF["cell_genotypes"][name]
    assert g.layout == "cell"
    assert g.normal == [tuple(e) for e in d["normal"]]
    assert g.reduce == [tuple(e) for e in d["reduce"]]
    assert all(isinstance(e, tuple) for e in g.normal + g.reduce)
    assert g.normal_concat == d["normal_concat"] and g.reduce_concat == d["reduce_concat"]


@pytest.mark.parametrize("name", RAW_NAMES)
def test_raw_weight_genotypes_resolve_as_published(name):
    g = G.get(name)
    d = REF["raw_weight_genotypes"][name]
    assert g.layout == "raw_weights"
    assert g.normal == d["normal"] and g.reduce == d["reduce"]


@pytest.mark.parametrize("name", PATH_NAMES)
def test_paths_resolve_as_published(name):
    g = G.get(name)
    assert g.layout == "path"
    assert g.normal == REF["multichannel_paths"][name]
    assert g.normal[0] == "Source"
    assert g.reduce == [] and g.normal_concat == [] and g.reduce_concat == []


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_gives_its_targets_genotype(alias):
    target = ALIASES[alias]
    assert G.get(alias) == G.get(target)
    assert G.aliases()[alias] == target


def test_names_cover_the_reference_and_filter_by_layout():
    every = set(CELL_NAMES) | set(RAW_NAMES) | set(PATH_NAMES) | set(EDGE_NAMES) | set(ALIASES)
    assert G.names() == sorted(every)
    assert set(G.names("cell")) == set(CELL_NAMES) | set(ALIASES)
    assert G.names("raw_weights") == RAW_NAMES
    assert G.names("path") == PATH_NAMES
    assert G.names("edges") == EDGE_NAMES
    with pytest.raises(ValueError):
        G.names("cells")


def test_get_returns_a_copy():
    G.get("DARTS_V2").normal.append(("none", 0))
    assert len(G.get("DARTS_V2").normal) == 8


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError) as e:
        G.get("DARTS_V3")
    assert "DARTS_V2" in str(e.value)
    with pytest.raises(KeyError) as e:
        G.get("sharpsepconv_darts")
    assert "SHARPSEPCONV_DARTS" in str(e.value)


# --------------------------------------------------------------------------- primitive sets


@pytest.mark.parametrize("name", sorted(REF["primitives"]))
def test_primitive_sets_equal_the_reference_in_order(name):
    assert getattr(G, name) == REF["primitives"][name]
    assert genotype_types.PRIMITIVE_SETS[name] == REF["primitives"][name]
    assert genotype_types.primitives(name) == REF["primitives"][name]


def test_primitive_set_sizes():
    assert (len(G.PRIMITIVES), len(G.SHARPER_PRIMITIVES), len(G.DARTS_PRIMITIVES)) == (9, 12, 8)
    assert set(genotype_types.PRIMITIVE_SETS) == set(REF["primitives"])


def test_primitives_resolves_names_and_passes_lists_through():
    ops = ["none", "skip_connect"]
    assert genotype_types.primitives(ops) == ops
    assert genotype_types.primitives(tuple(ops)) == ops
    resolved = genotype_types.primitives("DARTS_PRIMITIVES")
    resolved.append("x")  # a copy: the module's set must stay intact
    assert len(G.DARTS_PRIMITIVES) == 8
    with pytest.raises(KeyError) as e:
        genotype_types.primitives("SHARPER_PRIMITIVE")
    assert "SHARPER_PRIMITIVES" in str(e.value)
    with pytest.raises(TypeError):
        genotype_types.primitives(["none", 3])


# --------------------------------------------------------------------------- parse_cell

OPS3 = ["none", "a", "b"]


def _rows(*rows):
    return np.array(rows, dtype=float)


def test_parse_cell_known_answer_one_step():
    w = _rows([0.1, 0.2, 0.7], [0.5, 0.4, 0.1])
    assert G.parse_cell(w, OPS3, steps=1) == [("b", 0), ("a", 1)]


def test_parse_cell_emits_kept_inputs_in_ranked_order():
    # Node 0: input 1 is stronger than input 0, so it comes first.
    # Node 1: inputs ranked 2 (0.9), 0 (0.6), 1 (0.3): keep 2 then 0.
    w = _rows(
        [0.0, 0.3, 0.1],
        [0.0, 0.1, 0.8],
        [0.0, 0.6, 0.2],
        [0.0, 0.2, 0.3],
        [0.0, 0.9, 0.1],
    )
    assert G.parse_cell(w, OPS3, steps=2) == [("b", 1), ("a", 0), ("a", 2), ("a", 0)]


def test_parse_cell_ties_keep_the_lower_index():
    # Node 1: all three inputs tie at 0.5 -> keep inputs 0 and 1 (not 2), in that order;
    # within each row 'a' and 'b' tie -> 'a' (the lower op index).
    w = _rows(
        [0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5],
    )
    assert G.parse_cell(w, OPS3, steps=2) == [("a", 0), ("a", 1), ("a", 0), ("a", 1)]
    # A later input that ties with an earlier one is ranked after it.
    w2 = _rows([0.0, 0.1, 0.2], [0.0, 0.3, 0.1], [0.0, 0.2, 0.1], [0.0, 0.1, 0.3], [0.0, 0.3, 0.0])
    assert G.parse_cell(w2, OPS3, steps=2) == [("a", 1), ("b", 0), ("b", 1), ("a", 2)]


def test_skip_primitive_none_versus_no_exclusion():
    # 'none' dominates edge 1 of node 0 and edge 0 of node 1.
    w = _rows(
        [0.1, 0.6, 0.3],
        [0.9, 0.05, 0.05],
        [0.8, 0.1, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
    )
    hacked = G.parse_cell(w, OPS3, steps=2, skip_primitive="none")
    plain = G.parse_cell(w, OPS3, steps=2, skip_primitive=None)
    assert hacked == [("a", 0), ("a", 1), ("b", 2), ("a", 1)]
    assert plain == [("none", 1), ("a", 0), ("none", 0), ("b", 2)]
    assert G.parse_cell(w, OPS3, steps=2) == hacked  # 'none' is skipped by default


def test_skip_primitive_can_be_any_op():
    w = _rows([0.1, 0.6, 0.3], [0.2, 0.5, 0.3])
    assert G.parse_cell(w, OPS3, steps=1, skip_primitive="a") == [("b", 0), ("b", 1)]


def test_parse_cell_accepts_lists_tensors_and_set_names():
    rng = np.random.default_rng(0)
    w = rng.random((14, len(G.DARTS_PRIMITIVES)))
    expected = G.parse_cell(w, G.DARTS_PRIMITIVES)
    assert G.parse_cell(w.tolist(), G.DARTS_PRIMITIVES) == expected
    t = torch.tensor(w, dtype=torch.float32, requires_grad=True)
    assert G.parse_cell(t * 1.0, G.DARTS_PRIMITIVES) == G.parse_cell(
        w.astype(np.float32), G.DARTS_PRIMITIVES
    )
    assert G.parse_cell(w, "DARTS_PRIMITIVES") == expected
    assert len(expected) == 8
    assert all(isinstance(op, str) and type(j) is int for op, j in expected)


@pytest.mark.parametrize(
    "shape,steps",
    [
        ((13, 8), 4),
        ((14, 7), 4),
        ((14, 9), 4),
        ((14,), 4),
        ((2, 14, 8), 4),
        ((14, 8), 3),
        ((5, 8), 3),
    ],
)
def test_parse_cell_rejects_wrong_shapes(shape, steps):
    with pytest.raises(ValueError, match="shape"):
        G.parse_cell(np.ones(shape), G.DARTS_PRIMITIVES, steps=steps)


def test_parse_cell_other_errors():
    with pytest.raises(ValueError, match="skip_primitive"):
        G.parse_cell(np.ones((2, 2)), ["ResizablePool", "SharpSepConv"], steps=1)
    bad = np.ones((14, 8))
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        G.parse_cell(bad, G.DARTS_PRIMITIVES)


def test_parse_cell_other_step_counts():
    w = np.zeros((9, 3))  # 3 steps: 2 + 3 + 4 rows
    w[:, 1] = 1.0
    w[8, 2] = 2.0  # node 2's input 3 uses 'b'
    assert G.parse_cell(w, OPS3, steps=3) == [
        ("a", 0),
        ("a", 1),
        ("a", 0),
        ("a", 1),
        ("b", 3),
        ("a", 0),
    ]


def test_genotype_from_weights_concat():
    rng = np.random.default_rng(1)
    n, r = rng.random((14, 8)), rng.random((14, 8))
    g = genotype_types.genotype_from_weights(n, r, G.DARTS_PRIMITIVES)
    assert g.layout == "cell"
    assert g.normal_concat == [2, 3, 4, 5] and g.reduce_concat == [2, 3, 4, 5]
    assert g.normal == G.parse_cell(n, G.DARTS_PRIMITIVES)
    assert g.reduce == G.parse_cell(r, G.DARTS_PRIMITIVES)
    assert genotype_types.genotype_from_weights(
        n, r, G.DARTS_PRIMITIVES, multiplier=2
    ).normal_concat == [4, 5]
    with pytest.raises(ValueError):
        genotype_types.genotype_from_weights(n, r, G.DARTS_PRIMITIVES, multiplier=5)


# --------------------------------------------------------------------------- published data

# The original's genotype_extractor printed `<BASE>_genotype_skip_none` with skip_primitive='none'
# and `<BASE>_genotype_no_hack` with skip_primitive=None; the published `<BASE>` genotype is the
# skip-'none' one.
VARIANTS = [
    (base, suffix, skip)
    for base in ("SHARPER_SCALAR", "SHARPER_MAX_W")
    for suffix, skip in (("", "none"), ("_genotype_skip_none", "none"), ("_genotype_no_hack", None))
]


@pytest.mark.parametrize("base,suffix,skip", VARIANTS)
def test_raw_weights_reproduce_published_genotypes(base, suffix, skip):
    raw = G.get(base + "_WEIGHTS")
    parsed = genotype_types.genotype_from_weights(
        raw.normal, raw.reduce, G.SHARPER_PRIMITIVES, skip_primitive=skip
    )
    assert parsed == G.get(base + suffix)


@pytest.mark.parametrize("base", ["SHARPER_SCALAR", "SHARPER_MAX_W"])
def test_published_variants_differ_with_the_hack(base):
    raw = G.get(base + "_WEIGHTS")
    other = {"none": None, None: "none"}
    for suffix, skip in (("_genotype_skip_none", "none"), ("_genotype_no_hack", None)):
        parsed = genotype_types.genotype_from_weights(
            raw.normal, raw.reduce, G.SHARPER_PRIMITIVES, skip_primitive=other[skip]
        )
        assert parsed.normal != G.get(base + suffix).normal


def test_no_hack_keeps_none_mostly_in_scalar_search():
    # docs/facts/sharpdarts.md: without the hack the scalar genotype keeps 'none' in 6 of 8
    # normal ops, the Max-W one in 2.
    def nones(name):
        return sum(op == "none" for op, _ in G.get(name).normal)

    assert nones("SHARPER_SCALAR_genotype_no_hack") == 6
    assert nones("SHARPER_MAX_W_genotype_no_hack") == 2
    assert nones("SHARPER_SCALAR") == nones("SHARPER_MAX_W") == 0


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("name", CELL_NAMES + RAW_NAMES[:1] + PATH_NAMES[:1])
def test_json_round_trip(name):
    g = G.get(name)
    text = G.to_json(g)
    back = G.from_json(text)
    assert back == g
    assert type(back) is G.Genotype
    if g.layout == "cell":
        assert all(isinstance(e, tuple) for e in back.normal + back.reduce)
        assert json.loads(text)["normal"] == REF["cell_genotypes"][name]["normal"]
    assert G.from_dict(G.to_dict(g)) == g


def test_to_dict_normalises_ranges_and_defaults_layout():
    g = G.Genotype(
        normal=[("a", 0)], normal_concat=range(2, 6), reduce=[("b", 1)], reduce_concat=(2, 3)
    )
    assert g.layout == "cell"
    d = G.to_dict(g)
    assert d == {
        "normal": [["a", 0]],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [["b", 1]],
        "reduce_concat": [2, 3],
        "layout": "cell",
    }
    assert G.from_dict({k: v for k, v in d.items() if k != "layout"}).layout == "cell"


@pytest.mark.parametrize(
    "bad",
    [
        {
            "normal": [["a", 0]],
            "normal_concat": [2],
            "reduce": [],
            "reduce_concat": [2],
            "layout": "graph",
        },
        {"normal": [["a"]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]},
        {"normal": [["a", "0"]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]},
        {"normal": [["a", 0]], "normal_concat": [2], "reduce": []},
        {"normal": [], "normal_concat": [], "reduce": [], "reduce_concat": [], "extra": 1},
    ],
)
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError):
        G.from_dict(bad)


# --------------------------------------------------------------------------- promotion


def test_user_registry_path_defaults_to_experiments(monkeypatch):
    monkeypatch.delenv(G.ENV_VAR)
    path = G.user_registry_path()
    assert path.parts[-2:] == ("experiments", "genotypes.json")
    assert (path.parent.parent / "sharpdarts" / "__init__.py").is_file()


def test_user_registry_path_follows_the_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv(G.ENV_VAR)
    monkeypatch.setenv("SHARPDARTS_PROJECT", str(tmp_path))
    assert G.user_registry_path() == tmp_path.resolve() / "experiments" / "genotypes.json"
    monkeypatch.setenv(G.ENV_VAR, str(tmp_path / "elsewhere.json"))
    assert G.user_registry_path() == tmp_path / "elsewhere.json"


def test_promote_then_get_lineage_names(empty_user_registry):
    g = G.get("DARTS_V2")._replace(normal=[("sep_conv_5x5", 1)] * 8)
    info = {"run_id": "abc123", "commit": "deadbeef", "epoch": 50}
    stored = genotype_store.promote("MY_CELL", g, info)
    assert stored == g
    assert G.get("MY_CELL") == g
    assert G.lineage("MY_CELL") == info
    assert G.lineage("DARTS_V2") is None
    assert "MY_CELL" in G.names() and "MY_CELL" in G.names("cell")
    assert "MY_CELL" not in G.names("path")
    data = json.loads(empty_user_registry.read_text())
    assert data == {"genotypes": {"MY_CELL": {"genotype": G.to_dict(g), "lineage": info}}}

    genotype_store.promote("MY_PATH", G.get("MULTI_CHANNEL_RANDOM_PATH"), {"run_id": "p"})
    assert "MY_PATH" in G.names("path") and G.get("MY_PATH").layout == "path"
    assert G.get("MY_CELL") == g  # the first entry is kept
    with pytest.raises(KeyError) as e:
        G.lineage("MY_CELLS")
    assert "MY_CELL" in str(e.value)


def test_promote_explicit_path_and_env_override(tmp_path):
    other = tmp_path / "elsewhere" / "reg.json"
    genotype_store.promote("ONLY_THERE", G.get("DARTS_V1"), {}, path=other)
    assert "ONLY_THERE" in json.loads(other.read_text())["genotypes"]
    with pytest.raises(KeyError):
        G.get("ONLY_THERE")  # the environment's registry does not have it


@pytest.mark.parametrize("name", ["DARTS_V2", "DARTS", "MULTI_CHANNEL_MAX_W_PATH"])
def test_promote_refuses_builtin_names(empty_user_registry, name):
    genotype_store.promote("KEEP", G.get("DARTS_V1"), {"run_id": "k"})
    before = empty_user_registry.read_bytes()
    with pytest.raises(ValueError, match="builtin"):
        genotype_store.promote(name, G.get("DARTS_V1"), {})
    assert empty_user_registry.read_bytes() == before


def test_promote_refuses_duplicates_and_bad_input(empty_user_registry):
    genotype_store.promote("MINE", G.get("DARTS_V1"), {"run_id": "1"})
    before = empty_user_registry.read_bytes()
    with pytest.raises(ValueError, match="already taken"):
        genotype_store.promote("MINE", G.get("DARTS_V2"), {"run_id": "2"})
    for bad_name in ["my-cell", "1CELL", "", "a b", "run:x"]:
        with pytest.raises(ValueError, match="name"):
            genotype_store.promote(bad_name, G.get("DARTS_V2"), {})
    with pytest.raises(ValueError):
        genotype_store.promote("OTHER", G.get("DARTS_V2"), {"obj": object()})
    with pytest.raises(ValueError):
        genotype_store.promote("OTHER", G.get("DARTS_V2"), "run 2")
    with pytest.raises(ValueError):
        genotype_store.promote("OTHER", ("x",), {})
    assert empty_user_registry.read_bytes() == before
    assert G.get("MINE") == G.get("DARTS_V1")
    assert [p.name for p in empty_user_registry.parent.iterdir()] == [
        "genotypes.json"
    ]  # no temp files


def test_user_entries_cannot_shadow_builtins(empty_user_registry):
    # A hand-edited registry that reuses a builtin name does not change what get() returns.
    empty_user_registry.parent.mkdir(parents=True)
    fake = G.to_dict(G.get("DARTS_V1"))
    empty_user_registry.write_text(
        json.dumps({"genotypes": {"DARTS_V2": {"genotype": fake, "lineage": {}}}})
    )
    assert G.get("DARTS_V2").normal == [
        tuple(e) for e in REF["cell_genotypes"]["DARTS_V2"]["normal"]
    ]
    assert G.get("DARTS_V2") != G.get("DARTS_V1")
    assert G.lineage("DARTS_V2") is None
    assert G.names().count("DARTS_V2") == 1


def test_corrupt_registry_is_reported(empty_user_registry):
    empty_user_registry.parent.mkdir(parents=True)
    empty_user_registry.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        G.names()
    assert G.get("DARTS_V2").layout == "cell"  # builtins do not need the user file


# --------------------------------------------------------------------------- collection


def collect_in_a_forked_child(files: list[Path], out: Path) -> int:
    """``pytest --collect-only files`` in a forked child; writes the collected node ids to
    ``out`` (JSON) and returns pytest's exit status. Every module of tests/ is dropped from the
    child's sys.modules first, so that each is imported again and computes its parameters at
    collection time as a fresh interpreter would; the child keeps the libraries this one has
    imported (torch among them: the seconds a fresh interpreter spends on them decide
    nothing here)."""
    tests = files[0].parent

    class Record:
        def pytest_collection_finish(self, session):
            out.write_text(json.dumps([item.nodeid for item in session.items]))

    def collect() -> int:
        for name, module in list(sys.modules.items()):
            if Path(getattr(module, "__file__", None) or "/").parent == tests:
                del sys.modules[name]
        os.chdir(tests.parent)
        argv = ["--collect-only", "-q", "-p", "no:cacheprovider", *map(str, files)]
        return int(pytest.main(argv, plugins=[Record()]))

    pid = start_forked(collect, out.with_suffix(".log"))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_collected_cases_do_not_come_from_the_user_registry(tmp_path, monkeypatch):
    """Test cases parametrised at collection time take builtin names only.

    The README's own ``sharpdarts genotype promote`` adds a name to the user's registry; a
    test file that parametrised over ``names()`` then collected it as a case, which ran
    against the empty registry every test gets (conftest) and failed as an unknown name.
    """
    registry = tmp_path / "genotypes.json"
    genotype_store.promote("MY_PROMOTED_CELL", G.get("DARTS_V2"), {"run_id": "x"}, path=registry)
    genotype_store.promote(
        "MY_PROMOTED_PATH", G.get("MULTI_CHANNEL_RANDOM_PATH"), {"run_id": "y"}, path=registry
    )
    monkeypatch.setenv("SHARPDARTS_GENOTYPES", str(registry))
    assert {"MY_PROMOTED_CELL", "MY_PROMOTED_PATH"} <= set(G.names())  # names() would take them
    tests = Path(__file__).resolve().parent
    out = tmp_path / "collected.json"
    code = collect_in_a_forked_child(
        [tests / "test_models.py", tests / "test_multichannel.py"], out
    )
    assert code == 0
    collected = json.loads(out.read_text())
    # The builtin names are collected (the cases exist), the promoted ones are not.
    assert any("[DARTS_V2]" in i for i in collected)
    assert any("MULTI_CHANNEL_RANDOM_PATH" in i for i in collected)
    assert not [i for i in collected if "MY_PROMOTED" in i]


def test_builtin_names_ignore_the_user_registry():
    genotype_store.promote("MINE_TOO", G.get("DARTS_V1"), {"run_id": "1"})
    assert "MINE_TOO" in G.names() and "MINE_TOO" not in G.builtin_names()
    every = set(CELL_NAMES) | set(RAW_NAMES) | set(PATH_NAMES) | set(EDGE_NAMES) | set(ALIASES)
    assert G.builtin_names() == sorted(every)
    assert G.builtin_names("path") == PATH_NAMES
    with pytest.raises(ValueError):
        G.builtin_names("cells")


# --------------------------------------------------------------------------- resolve


def test_resolve_takes_genotypes_dicts_names_and_original_tuples():
    from collections import namedtuple

    g = G.get("DARTS_V2")
    assert G.resolve(g) is g
    assert G.resolve("DARTS_V2") == g
    assert G.resolve(G.to_dict(g)) == g
    # The original code's Genotype has four fields and ranges for the concat lists.
    Original = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    original = Original(list(g.normal), range(2, 6), list(g.reduce), range(2, 6))
    assert G.resolve(original) == g
    with pytest.raises(KeyError, match="DARTS_V2"):
        G.resolve("DARTS_V3")
    with pytest.raises(ValueError):
        G.resolve({"normal": []})
    with pytest.raises(TypeError):
        G.resolve(42)


def test_resolve_finds_promoted_names():
    mine = G.get("DARTS_V1")._replace(normal=[("sep_conv_3x3", 0)] * 8)
    genotype_store.promote("RESOLVED_ONE", mine, {"run_id": "r"})
    assert G.resolve("RESOLVED_ONE") == mine


# --------------------------------------------------------------------------- genotype_of


def write_run(results, run_id, final, experiment="search/demo"):
    folder = results / "runs" / experiment.replace("/", "-") / run_id
    folder.mkdir(parents=True)
    info = {
        "experiment": experiment,
        "seed": 3,
        "status": "completed",
        "final": final,
        "git": {"commit": "abc", "dirty": False},
    }
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_genotype_of_a_name_gives_its_lineage(tmp_path):
    assert genotype_store.genotype_of("DARTS_V2", tmp_path) == (G.get("DARTS_V2"), None)
    genotype_store.promote("FROM_RUN", G.get("DARTS_V1"), {"run_id": "x1"})
    assert genotype_store.genotype_of("FROM_RUN", tmp_path) == (G.get("DARTS_V1"), {"run_id": "x1"})


def test_genotype_of_a_run_final_or_best(tmp_path):
    final_g, best_g = G.get("DARTS_V1"), G.get("DARTS_V2")
    folder = write_run(
        tmp_path,
        "20260101-000000-ab12",
        {
            "genotype": G.to_dict(final_g),
            "genotype_epoch": 50,
            "best_genotype": G.to_dict(best_g),
            "best_epoch": 31,
        },
    )
    genotype, lineage = genotype_store.genotype_of("run:20260101-000000-ab12", tmp_path)
    assert genotype == final_g
    assert lineage == {
        "run_id": "20260101-000000-ab12",
        "experiment": "search/demo",
        "commit": "abc",
        "dirty": False,
        "epoch": 50,
        "which": "genotype",
        "seed": 3,
    }
    genotype, lineage = genotype_store.genotype_of(str(folder), tmp_path, best=True)
    assert genotype == best_g and lineage["epoch"] == 31 and lineage["which"] == "best_genotype"


def test_genotype_of_refuses_unknown_names_and_runs_without_a_genotype(tmp_path):
    from sharpdarts.errors import UserError

    write_run(tmp_path, "20260101-000000-cd34", {})
    with pytest.raises(UserError, match="has no genotype"):
        genotype_store.genotype_of("20260101-000000-cd34", tmp_path)
    with pytest.raises(UserError, match="neither a genotype nor a run.*DARTS_V2"):
        genotype_store.genotype_of("DARTS_V3", tmp_path)


def test_the_registry_and_its_store_do_not_import_torch():
    """The light commands (genotype show/promote) read and write the registry without torch."""
    code = (
        "import sys, sharpdarts.core.genotypes, sharpdarts.store.genotype_store; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False", out.stderr

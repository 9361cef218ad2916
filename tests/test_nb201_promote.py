"""A NAS-Bench-201 search's cell in the genotype registry, end to end through the command line:
promoted with its lineage, shown, listed with its space, trained by name and as run:ID with the
lineage in the training run's record, and refused (exit 2, one paragraph) by a network of the
other space."""

import json
from pathlib import Path

import pytest

from sharpdarts.core import genotypes
from sharpdarts.core.nb201_arch import arch_string, parse_arch
from sharpdarts.errors import UserError
from sharpdarts.face import cli
from sharpdarts.face.nb201_args import cell_of
from sharpdarts.face.plots.nb201_cell import nb201_graph
from sharpdarts.store import genotype_store

ALL_3X3 = arch_string(["nor_conv_3x3"] * 6)


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def run_infos(results: Path, experiment: str) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted((results / "runs" / experiment).glob("*/run.json"))
    ]


def test_a_nb201_search_cell_is_promoted_shown_listed_and_trained_with_its_lineage(
    tmp_path, capsys
):
    results = tmp_path / "results"
    smoke = ("--smoke", "--results", results, "--gin_param", "EPOCHS=1")  # one epoch is enough
    assert run_cli(capsys, "run", "nb201/search_gdas", *smoke)[0] == 0
    (search,) = run_infos(results, "nb201/search_gdas")
    run_id, arch = search["run_id"], search["final"]["genotype"]
    parse_arch(arch)

    code, out = run_cli(capsys, "genotype", "promote", run_id, "GDAS_CELL", "--results", results)
    assert code == 0 and "GDAS_CELL" in out.out and "nb201" in out.out
    assert genotypes.get("GDAS_CELL") == arch
    lineage = genotypes.lineage("GDAS_CELL")
    assert lineage["run_id"] == run_id and lineage["experiment"] == "nb201/search_gdas"
    assert lineage["commit"] == search["git"]["commit"]
    assert lineage["epoch"] == search["final"]["genotype_epoch"]

    code, out = run_cli(capsys, "genotype", "show", "GDAS_CELL")
    shown = json.loads(out.out)
    assert code == 0 and shown["genotype"] == arch and shown["space"] == "nb201"
    assert shown["lineage"] == lineage
    # The search run itself shows the same cell (it used to fail on a string genotype).
    code, out = run_cli(capsys, "genotype", "show", run_id, "--results", results)
    assert code == 0 and json.loads(out.out)["genotype"] == arch

    genotype_store.promote("MY_DARTS", genotypes.get("DARTS_V2"), {"run_id": "elsewhere"})
    code, out = run_cli(capsys, "genotype", "list")
    rows = {line.split()[0]: line.split()[1:] for line in out.out.splitlines()}
    assert code == 0 and rows["GDAS_CELL"][:2] == ["nb201", "arch"]
    assert run_id in " ".join(rows["GDAS_CELL"])
    assert rows["MY_DARTS"][:2] == ["darts", "cell"] and rows["DARTS_V2"][:3] == [
        "darts",
        "cell",
        "builtin",
    ]
    code, out = run_cli(capsys, "genotype", "list", "--space", "nb201")
    assert [line.split()[0] for line in out.out.splitlines()] == ["GDAS_CELL"]

    # `nb201 query` takes the promoted name, and refuses a DARTS one.
    assert cell_of("GDAS_CELL", str(results)) == arch
    with pytest.raises(UserError, match="not a NAS-Bench-201 cell"):
        cell_of("MY_DARTS", str(results))

    # Both bind the network to the same cell: with one seed the second would be the first run,
    # completed (its config is the same), and skipped.
    for seed, value in enumerate(("GDAS_CELL", f"run:{run_id}")):
        binding = f"GENOTYPE='{value}'"
        args = ("run", "nb201/train_cifar10", "--seed", seed, "--gin_param", binding, *smoke)
        assert run_cli(capsys, *args)[0] == 0
    trains = run_infos(results, "nb201/train_cifar10")
    records = {t["genotype"]["source"]: t["genotype"] for t in trains}
    assert sorted(records) == ["promoted", "run"]
    assert records["promoted"]["lineage"] == lineage and records["run"]["run_id"] == run_id
    for t in trains:
        assert t["genotype"]["genotype"] == arch and t["genotype"]["space"] == "nb201"
        # The network was built from the cell, not from the name.
        operative = (results / "runs" / "nb201/train_cifar10" / t["run_id"]).joinpath(
            "operative_config.gin"
        )
        assert arch in operative.read_text()

    # A genotype of the other space: one paragraph, exit 2, no run folder.
    for experiment, value, says in (
        ("nb201/train_cifar10", "MY_DARTS", "is a DARTS-space genotype"),
        ("nb201/train_cifar10", "DARTS_V2", "is a DARTS-space genotype"),
        ("cifar10/sharpsepconv_darts", "GDAS_CELL", "is a NAS-Bench-201 cell"),
        ("cifar10/sharpsepconv_darts", f"run:{run_id}", "is a NAS-Bench-201 cell"),
        ("cifar10/sharpsepconv_darts", ALL_3X3, "is a NAS-Bench-201 cell"),
    ):
        binding = f"GENOTYPE='{value}'"
        code, out = run_cli(capsys, "run", experiment, "--gin_param", binding, *smoke)
        assert code == 2 and out.err.startswith("sharpdarts: error:"), (value, out.err)
        assert "Traceback" not in out.err and "\n\n" not in out.err.strip()
        assert says in " ".join(out.err.split()) and "genotype list" in out.err
    assert len(run_infos(results, "nb201/train_cifar10")) == 2
    assert not (results / "runs" / "cifar10").exists()


def test_the_registry_keeps_arch_strings_checked_and_apart_from_darts_genotypes(tmp_path):
    lineage = {"run_id": "r1", "experiment": "nb201/search_gdas", "commit": "abc", "epoch": 2}
    assert genotype_store.promote("C3", ALL_3X3, lineage) == ALL_3X3
    assert genotypes.names("nb201") == ["C3"] and "C3" not in genotypes.names("cell")
    with pytest.raises(ValueError, match="not a NAS-Bench-201 arch string"):
        genotype_store.promote("BAD", "|nor_conv_3x3~0|+|conv~1|", lineage)
    assert "BAD" not in genotypes.names()
    # A DARTS-space network resolving the name says which space it is.
    with pytest.raises(ValueError, match="NAS-Bench-201 cell"):
        genotypes.resolve("C3")
    bind, record = genotype_store.training_genotype("C3", tmp_path, "nb201")
    assert bind == ALL_3X3 and record["lineage"] == lineage and record["source"] == "promoted"
    with pytest.raises(UserError, match="DARTS-space genotype"):
        genotype_store.training_genotype("C3", tmp_path, "darts")


def test_a_nb201_cell_is_drawn_without_its_none_edges():
    arch = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    source = nb201_graph(arch, title="GDAS").source
    edges = [line.strip() for line in source.splitlines() if "->" in line]
    assert edges == [
        "n0 -> n1 [label=nor_conv_3x3 fillcolor=gray]",
        "n1 -> n2 [label=nor_conv_1x1 fillcolor=gray]",
        "n0 -> n3 [label=skip_connect fillcolor=gray]",
        "n2 -> n3 [label=avg_pool_3x3 fillcolor=gray]",
    ]
    with pytest.raises(UserError, match="not a NAS-Bench-201 arch string"):
        nb201_graph("|conv~0|")

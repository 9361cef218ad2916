"""`make demo-lm`'s steps, end to end on the real pydoc corpus but with tiny sizes: the search
runs on the Python documentation text, its cell is promoted as DEMO_RNN, demo/lm_train trains
it and demo/lm_train_darts_v2 trains DARTS_V2's cell, and the demo_lm table shows all three."""

import json
from pathlib import Path

import pytest

from sharpdarts.face import cli
from sharpdarts.store import reader

# One epoch of 1,024 columns: the recurrent loop steps once per row, so few rows (about 50 of
# the ~52,000 training tokens) are what keeps it cheap; validation in as many columns.
TINY = ["--gin_param", "EPOCHS=1", "--gin_param", "BATCH_SIZE=1024", "--gin_param", "EMSIZE=8"]
# A search cell of 2 nodes instead of 8 (the promoted cell, trained by demo/lm_train, too).
SEARCH = ["--gin_param", "RNNSearchModel.steps=2", "--gin_param", "lm_search.eval_batch_size=1024"]
TRAIN = ["--gin_param", "lm_train.eval_batch_size=1024"]


def _run(capsys, *args) -> str:
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.slow(10)
def test_search_promote_train_and_table_on_the_pydoc_corpus(tmp_path, monkeypatch, capsys):
    results, data = tmp_path / "results", tmp_path / "data"
    monkeypatch.setenv("SHARPDARTS_GENOTYPES", str(results / "demo_genotypes.json"))
    common = ["--seed", 1, "--results", results, "--data", data, *TINY]
    search = _run(capsys, "run", "demo/lm_search", *common, *SEARCH).splitlines()[-1].split()[-1]
    assert (data / "pydoc" / "train.txt").is_file()  # written under the data root on first use
    info = json.loads((Path(search) / "run.json").read_text())
    assert info["final"]["genotype"]["recurrent"] and info["vocabulary"] > 500
    _run(capsys, "genotype", "promote", search, "DEMO_RNN", "--replace", "--results", results)
    train = _run(capsys, "run", "demo/lm_train", *common, *TRAIN).splitlines()[-1].split()[-1]
    lineage = json.loads((Path(train) / "run.json").read_text())["genotype"]
    assert lineage["name"] == "DEMO_RNN" and lineage["lineage"]["run_id"] == Path(search).name
    _run(capsys, "run", "demo/lm_train_darts_v2", *common, *TRAIN)
    metrics = reader.read_metrics(Path(train))
    assert metrics and metrics[-1]["valid_ppl"] > 1.0
    table = _run(capsys, "table", "demo_lm", "--results", results, "--format", "csv")
    header, *lines = [line.split(",") for line in table.splitlines() if line]
    rows = {line[0]: dict(zip(header, line)) for line in lines}
    assert set(rows) == {"demo/lm_search", "demo/lm_train", "demo/lm_train_darts_v2"}
    for name in ("demo/lm_train", "demo/lm_train_darts_v2"):  # valid and test perplexity
        row = rows[name]
        assert float(row["valid_ppl_mean"]) > 1.0 and float(row["test_ppl_mean"]) > 1.0
    assert float(rows["demo/lm_train"]["valid_ppl_mean"]) == min(
        m["valid_ppl"] for m in metrics
    )  # the best epoch's
    assert float(rows["demo/lm_search"]["valid_ppl_mean"]) > 1.0
    # `make tables` after `make demo-lm`: a recurrent search's figures (its cell, picked by
    # validation perplexity) beside the trainings' curves.
    out = tmp_path / "tables"
    _run(capsys, "tables", "--results", results, "--out", out)
    assert (out / "demo_lm.md").is_file()
    assert (out / "figures" / "demo-lm_search-genotype.svg").read_text().lstrip().startswith("<")
    assert (out / "figures" / "demo-lm_train-curves.svg").is_file()

"""The one run-folder reader: as recorded for the writer, in today's names for tables and plots."""

import json

import pytest

from sharpdarts.errors import UserError
from sharpdarts.store import reader
from sharpdarts.store.reader import RECORD_FORMAT
from sharpdarts.store.results import load_metrics, load_runs
from sharpdarts.store.run import Run
from sharpdarts.store.tables import build_table, format_table

SSC = "cifar10/sharpsepconv_darts"

# What the training job logged before record format 2: test-set figures under valid_* names,
# and a "best" epoch chosen on them.
OLD_TRAIN_EPOCHS = [
    {
        "epoch": 1,
        "lr": 0.025,
        "train_loss": 1.2,
        "train_acc": 55.0,
        "valid_loss": 1.0,
        "valid_acc": 64.0,
        "valid_acc_top5": 96.0,
        "drop_path_prob": 0.0,
        "seconds": 9.0,
    },
    {
        "epoch": 2,
        "lr": 0.0,
        "train_loss": 0.9,
        "train_acc": 66.0,
        "valid_loss": 0.8,
        "valid_acc": 71.5,
        "valid_acc_top5": 97.5,
        "drop_path_prob": 0.1,
        "seconds": 9.0,
    },
]


def old_train_final(error):
    return {
        "test_error_top1": error,
        "test_error_top5": 0.1,
        "cifar10_1_error": 6.0,
        "best_epoch": 2,
        "best_valid_acc": 100.0 - error,
        "params_m": 3.56,
        "multiply_adds_b": 0.579,
    }


def write_folder(root, experiment, run_id, *, kind, final, epochs=(), **extra):
    folder = root / "runs" / experiment / run_id
    folder.mkdir(parents=True)
    info = {
        "experiment": experiment,
        "run_id": run_id,
        "seed": int(run_id[-1]),
        "kind": kind,
        "config_hash": "c0ffee000000",
        "status": "completed",
        "started": "2025-01-01T00:00:00+00:00",
        "ended": "2025-01-01T01:00:00+00:00",
        "wall_seconds": 3600.0,
        "device_count": 1,
        "final": final,
        **extra,
    }
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    return folder


# ---------------------------------------------------------------------------- today's names


def test_old_training_folder_reads_with_test_names_and_no_test_chosen_best(tmp_path):
    folder = write_folder(
        tmp_path,
        SSC,
        "20250101T000000000Z-aaaa01",
        kind="train",
        final=old_train_final(2.0),
        epochs=OLD_TRAIN_EPOCHS,
    )
    info = reader.read_info(folder)
    assert "best_valid_acc" not in info["final"] and "best_epoch" not in info["final"]
    assert info["final"]["best_test_acc_legacy"] == 98.0
    assert info["final"]["best_test_epoch_legacy"] == 2
    assert info["final"]["test_error_top1"] == 2.0  # the final epoch's error, unchanged
    records = reader.read_metrics(folder)
    assert [r["test_acc"] for r in records] == [64.0, 71.5]
    assert [r["test_loss"] for r in records] == [1.0, 0.8]
    assert [r["test_acc_top5"] for r in records] == [96.0, 97.5]
    assert not any(k.startswith("valid_") for r in records for k in r)
    assert records[1]["train_acc"] == 66.0 and records[1]["drop_path_prob"] == 0.1
    # The files themselves are never rewritten by a reader.
    assert json.loads((folder / "run.json").read_text())["final"]["best_valid_acc"] == 98.0
    # The writer sees what it wrote: it must never rename its own records.
    run = Run(folder)
    assert run.info["final"]["best_valid_acc"] == 98.0
    assert run.metrics()[0]["valid_acc"] == 64.0 and "test_acc" not in run.metrics()[0]


def test_search_runs_and_todays_training_runs_keep_their_validation_names(tmp_path):
    search = write_folder(
        tmp_path,
        "search/darts",
        "20250101T000000000Z-bbbb01",
        kind="search",
        final={"best_valid_acc": 80.0, "best_epoch": 3},
        epochs=[{"epoch": 1, "valid_acc": 70.0, "valid_loss": 1.0}],
    )
    assert reader.read_info(search)["final"] == {"best_valid_acc": 80.0, "best_epoch": 3}
    assert reader.read_metrics(search) == [{"epoch": 1, "valid_acc": 70.0, "valid_loss": 1.0}]
    # A training run of today's format with a held-out validation split: valid_* is validation.
    held_out = write_folder(
        tmp_path,
        SSC,
        "20250101T000000000Z-cccc01",
        kind="train",
        record_format=RECORD_FORMAT,
        final={"best_valid_acc": 90.0, "best_epoch": 5, "test_error_top1": 3.0},
        epochs=[{"epoch": 1, "valid_acc": 85.0, "test_acc": 84.0}],
    )
    assert reader.read_info(held_out)["final"]["best_valid_acc"] == 90.0
    assert reader.read_metrics(held_out) == [{"epoch": 1, "valid_acc": 85.0, "test_acc": 84.0}]


def test_old_training_folders_give_the_same_cifar10_table(tmp_path):
    for seed, error in ((1, 1.9), (2, 2.0), (3, 2.2)):
        write_folder(
            tmp_path,
            SSC,
            f"20250101T000000000Z-dddd0{seed}",
            kind="train",
            final=old_train_final(error),
            epochs=OLD_TRAIN_EPOCHS,
        )
    runs = load_runs(tmp_path)
    assert "best_valid_acc" not in runs and list(runs["best_test_acc_legacy"]) == [98.1, 98.0, 97.8]
    table = build_table("cifar10", runs)
    row = table[table["experiment"] == SSC].iloc[0]
    assert row["seeds"] == 3 and row["test_error_mean"] == pytest.approx(2.0333333)
    assert row["test_error_std"] == pytest.approx(0.1527525)
    assert row["cifar10_1_error_mean"] == 6.0 and row["params_mean"] == 3.56
    assert row["multiply_adds_mean"] == 0.579
    line = next(l for l in format_table(table, "markdown").splitlines() if f"| {SSC} " in l)
    for expected in ("2.03 ± 0.15", "1.98 ± 0.07", "6.0 ± 0.0", "3.56", "0.579", "| 3 "):
        assert expected in line, expected

    epochs = load_metrics(tmp_path)
    assert len(epochs) == 6 and list(epochs["test_acc"][:2]) == [64.0, 71.5]
    assert "valid_acc" not in epochs


# ---------------------------------------------------------------------------- metrics files


def test_scan_metrics_reports_a_torn_or_corrupt_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert reader.scan_metrics(folder) == ([], True)  # no file yet
    metrics = folder / "metrics.jsonl"
    metrics.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    assert reader.scan_metrics(folder) == ([{"epoch": 1}, {"epoch": 2}], True)
    metrics.write_text('{"epoch": 1}\n{"epoch": 2, "lr')  # a crash mid-append
    assert reader.scan_metrics(folder) == ([{"epoch": 1}], False)
    metrics.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    assert reader.scan_metrics(folder) == ([{"epoch": 1}, {"epoch": 3}], False)
    metrics.write_text('{"epoch": 1}\n{"epoch": "two"}\n{"lr": 0.1}\n')
    assert reader.scan_metrics(folder) == ([{"epoch": 1}], False)


def test_read_metrics_sorts_by_epoch_and_the_later_duplicate_wins(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(
        '{"epoch": 2, "lr": 0.5}\n{"epoch": 1, "lr": 1.0}\n{"epoch": 2, "lr": 0.25}\n{"epo'
    )
    # No run.json: read without renaming.
    assert reader.read_metrics(folder) == [{"epoch": 1, "lr": 1.0}, {"epoch": 2, "lr": 0.25}]


def test_read_info_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        reader.read_info(tmp_path)
    (tmp_path / "run.json").write_text('{"experiment": "cifar')
    with pytest.raises(UserError, match="Cannot read"):
        reader.read_info(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="JSON object"):
        reader.read_info(tmp_path / "run.json")


def test_the_mapping_leaves_non_dict_finals_and_odd_formats_alone():
    info = {"kind": "train", "final": None}
    assert reader.current_names(info) == info
    assert reader.is_legacy_training({"kind": "train", "record_format": "garbage"})
    assert not reader.is_legacy_training({"kind": "train", "record_format": RECORD_FORMAT})
    assert not reader.is_legacy_training({"kind": "evaluate"})
    record = {"epoch": 1, "valid_acc": 1.0, "test_acc": 2.0}  # today's name already there wins
    assert reader.current_epoch_names(record, {"kind": "train"}) == {"epoch": 1, "test_acc": 2.0}
    unknown_run = {"epoch": 1, "valid_acc": 3.0}  # no run.json to tell the kind: as written
    assert reader.current_epoch_names(unknown_run, None) == unknown_run

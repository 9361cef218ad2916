"""Language-model corpora in the awd-lstm / DARTS format (small files in the real format)."""

import numpy as np
import pytest
import torch

from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import corpus as C
from sharpdarts.errors import UserError


def _write(folder, names=("train.txt", "valid.txt", "test.txt")):
    folder.mkdir(parents=True, exist_ok=True)
    texts = [" the cat sat \n\n on the mat\n", "a dog  sat\n", "the bird\n"]
    for name, text in zip(names, texts):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_vocabulary_in_first_occurrence_order_over_train_valid_test(tmp_path):
    corpus = C.load_corpus(_write(tmp_path / "penn"))
    assert corpus.words == ["the", "cat", "sat", "<eos>", "on", "mat", "a", "dog", "bird"]
    w = {word: i for i, word in enumerate(corpus.words)}
    # A blank line is a lone <eos>; every line ends with one.
    assert corpus.train.tolist() == [
        w[x] for x in "the cat sat <eos> <eos> on the mat <eos>".split()
    ]
    assert corpus.valid.tolist() == [w[x] for x in "a dog sat <eos>".split()]
    assert corpus.test.tolist() == [w[x] for x in "the bird <eos>".split()]
    assert corpus.train.dtype == torch.int64 and corpus.ntokens == 9


def test_raw_ptb_file_names_and_missing_files(tmp_path):
    corpus = C.load_corpus(
        _write(tmp_path / "raw", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"))
    )
    assert corpus.ntokens == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train.txt, valid.txt and test.txt"):
        C.load_corpus(tmp_path / "empty")


def test_vocabulary_is_built_once_and_cached(tmp_path, monkeypatch):
    folder = _write(tmp_path / "penn")
    first = C.load_corpus(folder)
    assert (folder / C.CACHE_NAME).is_file()
    C._load.cache_clear()

    def fail(files):
        raise AssertionError("the text was read again")

    monkeypatch.setattr(C, "_read", fail)
    again = C.load_corpus(folder)
    assert again.words == first.words and torch.equal(again.test, first.test)
    # Editing a file invalidates the cache.
    (folder / "test.txt").write_text("the fish\n", encoding="utf-8")
    monkeypatch.undo()
    assert C.load_corpus(folder).words[-1] == "fish"


def test_batchify_drops_the_tail_and_fills_columns_in_order():
    batched = C.batchify(torch.arange(929_589), 64)  # standard PTB train: 53 dropped
    assert batched.shape == (14_524, 64)
    assert batched[:, 1].tolist() == list(range(14_524, 2 * 14_524))
    assert C.batchify(torch.arange(73_760), 10).shape == (7_376, 10)
    assert C.batchify(torch.arange(73_760), 256).shape == (288, 256)  # 32 dropped
    assert (C.EVAL_BATCH_SIZE, C.TEST_BATCH_SIZE) == (10, 1)
    with pytest.raises(ValueError):
        C.batchify(torch.arange(5), 4)


def test_get_batch_targets_are_the_next_rows_and_cut_at_the_end():
    source = C.batchify(torch.arange(40), 4)  # 10 rows
    x, y = C.get_batch(source, 2, 3)
    assert torch.equal(x, source[2:5]) and torch.equal(y, source[3:6].reshape(-1))
    x, y = C.get_batch(source, 7, 35)  # L = min(35, 10 - 1 - 7) = 2
    assert x.shape == (2, 4) and y.numel() == 8


def _original_lengths(rows, bptt, jitter, seed):
    """The original's loops, transcribed from their description."""
    np.random.seed(seed)
    out, i = [], 0
    while i < rows - 1 - 1:
        base = bptt if np.random.random() < 0.95 else bptt / 2.0
        if jitter:
            seq_len = max(5, int(np.random.normal(base, 5)))
            seq_len = min(seq_len, bptt + 20)
        else:
            seq_len = int(base)
        out.append((i, seq_len))
        i += seq_len
    return out


@pytest.mark.parametrize("jitter", [True, False])
def test_bptt_windows_follow_the_original(jitter):
    expected = _original_lengths(14_524, 35, jitter, seed=3)
    np.random.seed(3)
    got = list(C.bptt_windows(14_524, 35, jitter))
    assert got == expected
    lengths = {n for _, n in got}
    if jitter:
        assert min(lengths) >= 5 and max(lengths) <= 55 and len(lengths) > 20
    else:
        assert lengths == {35, 17}


def test_registered_corpora_read_from_the_data_root(tmp_path):
    _write(tmp_path / "penn")
    _write(tmp_path / "wikitext-2")
    bundle = bundle_lib.build_datasets(name="ptb", root=str(tmp_path))
    assert bundle.spec.modality == "text" and bundle.train.ntokens == 9
    assert bundle_lib.build_datasets(name="wikitext2", root=str(tmp_path)).train.ntokens == 9
    with pytest.raises(UserError, match="penn"):
        bundle_lib.build_datasets(name="ptb", root=str(tmp_path / "nowhere"))
    synthetic = bundle_lib.build_datasets(name="synthetic_text", seed=1).train
    assert synthetic.ntokens == 50 and synthetic.train.numel() == 800

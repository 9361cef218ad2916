"""The offline corpus made from CPython's documentation topics (pydoc_data.topics): the files
it writes are in the awd-lstm format, deterministic, cached, and read back by the corpus
loader and through the DATASETS registry as PTB is."""

import json

import pytest

from sharpdarts.engine.data import corpus as C
from sharpdarts.engine.data import pydoc_corpus as P
from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.errors import UserError

# Sized (in prose tokens: 23, 5, 4, 11) so that the split is train: alpha, delta; valid: beta;
# test: gamma.
TOPICS = {
    "alpha": "Alpha heading\n*************\n\nThe cat sat on the mat. The cat ran!\n\n"
    "   code_line = 1  # an indented example\n\nThe dog sat on the cat's mat, twice.",
    "beta": "Beta\n====\n\nThe dog ran.",
    "gamma": "A bird sang.",
    "delta": "The cat sat on the mat. The dog sat.",
}


def test_prose_only_ptb_tokens_and_one_line_per_sentence():
    assert P.paragraphs(TOPICS["alpha"]) == [
        "Alpha heading",
        "The cat sat on the mat. The cat ran!",
        "The dog sat on the cat's mat, twice.",
    ]  # the indented example and underline dropped
    assert P.tokenize("The *dict* `x.__len__()` has 3.5 keys, doesn\u2019t it \u201cso\u201d?") == [
        "the",
        "dict",
        "x",
        ".",
        "__len__",
        "(",
        ")",
        "has",
        "N",
        "keys",
        ",",
        "doesn't",
        "it",
        '"',
        "so",
        '"',
        "?",
    ]
    assert P.sentences("One two. Three four!\n\nFive?") == [
        ["one", "two", "."],
        ["three", "four", "!"],
        ["five", "?"],
    ]


def test_topics_split_by_token_share_in_name_order():
    sizes = {"a": 80, "b": 10, "c": 10, "d": 80, "e": 10, "f": 10}
    split = P.split_topics(sizes)
    assert split == {"train": ["a", "d"], "valid": ["b", "e"], "test": ["c", "f"]}
    assert P.split_topics(dict(reversed(sizes.items()))) == split  # the order given is ignored


def test_rare_training_words_become_unk_in_every_split():
    sizes = {name: sum(map(len, P.sentences(text))) for name, text in TOPICS.items()}
    assert sizes == {"alpha": 23, "beta": 5, "gamma": 4, "delta": 11}
    assert P.split_topics(sizes) == {
        "train": ["alpha", "delta"],
        "valid": ["beta"],
        "test": ["gamma"],
    }
    lines = P.build_lines(TOPICS, min_count=3)
    assert lines["valid"] == ["<unk>", "the <unk> <unk> ."]  # the heading 'beta' too
    assert lines["test"] == ["<unk> <unk> <unk> ."]
    train = " ".join(lines["train"]).split()
    # 'the', 'cat', 'sat', '.' occur 3+ times in the training topics; 'dog' does not.
    assert {"the", "cat", "sat", "."} <= set(train) and "dog" not in train
    vocabulary = set(train)
    for split in ("valid", "test"):
        assert set(" ".join(lines[split]).split()) <= vocabulary | {P.UNK}


def test_files_written_in_the_corpus_format_and_read_back(tmp_path):
    folder = P.write_corpus(tmp_path / "pydoc", TOPICS)
    for split in C.SPLITS:
        text = (folder / f"{split}.txt").read_text(encoding="utf-8")
        assert text.endswith("\n") and all(line.strip() for line in text.splitlines())
    stamp = json.loads((folder / P.SOURCE_FILE).read_text())
    assert stamp["source"] == "pydoc_data.topics" and stamp["topics"] == 4
    corpus = C.load_corpus(folder)
    lines = P.build_lines(TOPICS)
    for split in C.SPLITS:  # one <eos> per line, the words in order
        expected = [w for line in lines[split] for w in line.split() + [C.EOS]]
        assert [corpus.words[i] for i in getattr(corpus, split).tolist()] == expected


def test_written_once_rewritten_when_the_source_changes(tmp_path):
    folder = P.write_corpus(tmp_path / "pydoc", TOPICS)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    P.write_corpus(folder, TOPICS)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    changed = dict(TOPICS, delta="The cat sat on the mat. The cat sat again. The cat sat.")
    P.write_corpus(folder, changed)
    assert (folder / "train.txt").read_text().count("cat") > 4
    # A damaged stamp (an interrupted write) is rewritten, never trusted.
    (folder / P.SOURCE_FILE).write_text("{", encoding="utf-8")
    P.write_corpus(folder, TOPICS)
    assert json.loads((folder / P.SOURCE_FILE).read_text()) == P.source_stamp(TOPICS)


def test_the_real_topics_give_a_deterministic_small_vocabulary_corpus(tmp_path):
    first = C.load_corpus(P.write_corpus(tmp_path / "one"))
    second = P.write_corpus(tmp_path / "two")
    for split in C.SPLITS:
        assert (tmp_path / "one" / f"{split}.txt").read_bytes() == (
            second / f"{split}.txt"
        ).read_bytes()
    assert 500 < first.ntokens < 5000 and P.UNK in first.words and C.EOS in first.words
    n_train, n_valid, n_test = (len(getattr(first, s)) for s in C.SPLITS)
    assert n_train > 30_000 and n_valid > 2_000 and n_test > 2_000
    assert 0.6 < n_train / (n_train + n_valid + n_test) < 0.9


def test_registered_as_a_text_dataset_under_the_data_root(tmp_path):
    bundle = build_datasets(name="pydoc", root=str(tmp_path))
    assert bundle.spec.modality == "text" and (tmp_path / "pydoc" / "train.txt").is_file()
    assert bundle.train.ntokens == C.load_corpus(tmp_path / "pydoc").ntokens


def test_a_data_root_that_cannot_hold_the_folder_is_a_user_error(tmp_path):
    root = tmp_path / "a_file"
    root.write_text("not a folder")
    with pytest.raises(UserError, match="writable folder"):
        P.write_corpus(root / "pydoc", TOPICS)

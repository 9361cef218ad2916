"""An offline English corpus: the Python documentation's topic texts, in the awd-lstm format.

Every CPython installation ships ``pydoc_data.topics`` in its standard library: a dict
``topics`` of the Language Reference's sections as plain text (what ``help('assignment')``
prints): 79 topics and 0.46 million characters on Python 3.11, mostly English prose. It is
there offline, on every machine this project runs on, so the language-model demo
(``make demo-lm``) needs no download, as the image demo reads the digits scikit-learn ships.

:func:`write_corpus` turns it into a word-level corpus in the format PTB and WikiText-2 are
read in (:mod:`sharpdarts.engine.data.corpus`): ``train.txt``, ``valid.txt`` and ``test.txt``
under ``<data root>/pydoc/``, one sentence per line, tokens separated by spaces. The steps,
each deterministic:

- prose only: a paragraph (lines between blank lines) that is indented is a code example or
  a grammar rule and is dropped, as are heading underlines (``*****``, ``=====``);
- PTB-style tokens: lowercase, words (identifiers with ``_`` included, and with their
  apostrophe), numbers as ``N`` (as Mikolov's PTB), every other non-space character its own
  token (``,`` ``(`` ``"`` ...); the reST emphasis marks ``*`` and ``` ` `` are removed,
  typographic quotes made ASCII;
- one line per sentence (a split after ``.``, ``!`` or ``?`` followed by a space);
- the split is by topic: topics in sorted name order each go to the split furthest below
  its share of the tokens (80 / 10 / 10), so the three interleave through the alphabet;
- words seen fewer than ``MIN_COUNT`` times in the training topics become ``<unk>``
  everywhere, which keeps the vocabulary small (1,214 words on Python 3.11.7).

The folder is written once, each file atomically, and ``SOURCE.json`` last: it names the
Python version and the topics' hash, and a folder whose ``SOURCE.json`` does not match this
interpreter's topics is rewritten (the text differs between Python versions, so do the
demo's figures).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

from sharpdarts.core.io import atomic_write, atomic_write_json
from sharpdarts.engine.data.corpus import SPLITS, load_corpus
from sharpdarts.errors import UserError

FOLDER = "pydoc"
SOURCE_FILE = "SOURCE.json"
UNK = "<unk>"
MIN_COUNT = 3
SHARES = {"train": 0.8, "valid": 0.1, "test": 0.1}
FORMAT_VERSION = 1  # bump when the tokenisation changes: written folders are then rewritten

_UNDERLINE = re.compile(r"^\s*([*=\-^~#+])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"[a-z_][a-z0-9_]*(?:'[a-z]+)?|\d+(?:[.,]\d+)*|\S")
# Typographic quotes as ASCII ones, so "object's" and "object’s" are one word.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def topics() -> dict[str, str]:
    """The documentation topics of this interpreter's standard library, by name."""
    try:
        from pydoc_data.topics import topics as texts
    except ImportError as exc:  # some distributions split the docs out of the stdlib
        raise UserError(
            "This Python has no pydoc_data.topics (the documentation text CPython ships in "
            "its standard library; some Linux distributions move it to a separate package "
            f"such as python3-doc): {exc}."
        ) from exc
    return dict(texts)


def paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one topic, each joined into one line.

    A paragraph whose first line is indented is a code example or a grammar rule (the
    topics indent those by three spaces) and is dropped; so are heading underlines.
    """
    kept = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.split("\n") if line.strip() and not _UNDERLINE.match(line)]
        if lines and not lines[0][:1].isspace():
            kept.append(" ".join(line.strip() for line in lines))
    return kept


def tokenize(sentence: str) -> list[str]:
    """PTB-style tokens of one sentence: lowercased words, ``N`` for numbers, punctuation
    as tokens; reST emphasis marks removed."""
    text = sentence.lower().translate(_QUOTES).replace("*", "").replace("`", "")
    tokens = _TOKEN.findall(text)
    return ["N" if token[0].isdigit() else token for token in tokens]


def sentences(text: str) -> list[list[str]]:
    """The tokenised sentences of one topic's prose, in order."""
    out = []
    for paragraph in paragraphs(text):
        for sentence in _SENTENCE_END.split(paragraph):
            tokens = tokenize(sentence)
            if tokens:
                out.append(tokens)
    return out


def split_topics(sizes: dict[str, int]) -> dict[str, list[str]]:
    """Topic names per split: in sorted order, each topic goes to the split furthest below its
    share of the tokens so far (ties to the first in ``SPLITS``).

    Args:
        sizes: each topic's size (its number of prose tokens).
    """
    names = {split: [] for split in SPLITS}
    have = dict.fromkeys(SPLITS, 0)
    total = 0
    for name in sorted(sizes):
        total += sizes[name]
        split = max(SPLITS, key=lambda s: SHARES[s] * total - have[s])
        names[split].append(name)
        have[split] += sizes[name]
    return names


def build_lines(texts: dict[str, str], min_count: int = MIN_COUNT) -> dict[str, list[str]]:
    """The corpus's lines per split: sentences of the split's topics, rare words as ``<unk>``.

    The vocabulary is the training topics' words seen at least ``min_count`` times; every
    other word, in any split, is ``<unk>``.
    """
    by_topic = {name: sentences(text) for name, text in texts.items()}
    sizes = {name: sum(map(len, rows)) for name, rows in by_topic.items()}
    tokenised = {
        split: [tokens for name in names for tokens in by_topic[name]]
        for split, names in split_topics(sizes).items()
    }
    counts = Counter(token for tokens in tokenised["train"] for token in tokens)
    keep = {word for word, count in counts.items() if count >= min_count}
    return {
        split: [" ".join(t if t in keep else UNK for t in tokens) for tokens in rows]
        for split, rows in tokenised.items()
    }


def source_stamp(texts: dict[str, str]) -> dict:
    """What a written folder was made from: the format, Python version and topics' hash."""
    digest = hashlib.sha256(json.dumps(texts, sort_keys=True).encode("utf-8")).hexdigest()
    return {
        "format": FORMAT_VERSION,
        "source": "pydoc_data.topics",
        "python": ".".join(map(str, sys.version_info[:3])),
        "topics_sha256": digest,
        "topics": len(texts),
        "min_count": MIN_COUNT,
    }


def write_corpus(folder: str | os.PathLike, texts: dict[str, str] | None = None) -> Path:
    """Writes the corpus into ``folder`` unless it holds this source's corpus already.

    Args:
        folder: the corpus folder (``<data root>/pydoc``); created if missing.
        texts: the topics (default: this interpreter's ``pydoc_data.topics``).

    Returns:
        The folder. Each text file is written atomically and ``SOURCE.json`` last, so an
        interrupted write is redone by the next call.
    """
    folder = Path(folder)
    texts = topics() if texts is None else texts
    stamp = source_stamp(texts)
    try:
        if json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8")) == stamp:
            return folder
    except (OSError, ValueError):
        pass  # missing or damaged: write it
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split, lines in build_lines(texts).items():
            atomic_write(folder / f"{split}.txt", "".join(f"{line}\n" for line in lines))
        atomic_write_json(folder / SOURCE_FILE, stamp)
    except OSError as exc:
        raise UserError(
            f"Could not write the pydoc corpus into {folder.resolve()}: {exc}. "
            "Point --data (or $SHARPDARTS_DATA) at a writable folder."
        ) from exc
    return folder


def builder(root, train, transform, download, seed):
    """The DatasetSpec builder: ``<root>/pydoc``, written on first use, read as PTB is."""
    return load_corpus(write_corpus(Path(root) / FOLDER))

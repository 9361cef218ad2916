"""Word-level language-model corpora in the awd-lstm / DARTS format, and their batching.

A corpus folder holds ``train.txt``, ``valid.txt`` and ``test.txt`` (awd-lstm-lm's
``getdata.sh`` names PTB's and WikiText-2's files so) or the raw ``ptb.train.txt``,
``ptb.valid.txt`` and ``ptb.test.txt``. Every line is split on whitespace and ends with
``<eos>``; one vocabulary gives ids in first-occurrence order over train, then valid, then
test (all three add words), as the original's ``Corpus`` does (PTB: 10,000 words; WT2:
33,278). The tokenised corpus is cached beside the text (``.sharpdarts_corpus.pt``, keyed by
the files' sizes and modification times), so the vocabulary is built once.

Batching follows ``docs/facts/darts_rnn.md``, section 1: :func:`batchify` cuts the token stream
into ``bsz`` columns (the tail dropped), :func:`get_batch` takes ``L`` rows and the rows after
them as targets, and :func:`bptt_windows` yields the variable BPTT lengths of the original's
training loops.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sharpdarts.core.io import atomic_write
from sharpdarts.errors import UserError

log = logging.getLogger(__name__)

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
CACHE_NAME = ".sharpdarts_corpus.pt"
CACHE_VERSION = 1

# Batch sizes of the original: training 64 (search 256), validation 10, test 1.
EVAL_BATCH_SIZE = 10
TEST_BATCH_SIZE = 1


@dataclass
class Corpus:
    """A tokenised corpus.

    Attributes:
        words: the vocabulary, id -> word.
        train, valid, test: 1-d int64 tensors of word ids.
        path: the folder it was read from.
    """

    words: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    path: str = ""

    @property
    def ntokens(self) -> int:
        """The vocabulary size."""
        return len(self.words)


def split_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The three text files of a corpus folder (``train.txt`` ... or ``ptb.train.txt`` ...).

    Raises:
        UserError: a file is missing (the message says which names were looked for).
    """
    folder = Path(folder)
    for pattern in ("{}.txt", "ptb.{}.txt"):
        files = {split: folder / pattern.format(split) for split in SPLITS}
        if all(f.is_file() for f in files.values()):
            return files
    raise UserError(
        f"No language-model corpus in {folder.resolve()}: it needs train.txt, valid.txt and "
        "test.txt (or ptb.train.txt, ptb.valid.txt and ptb.test.txt), one sentence per line, "
        "as awd-lstm-lm's getdata.sh writes them. Point --data (or $SHARPDARTS_DATA) at the "
        "folder above it."
    )


def tokenize_lines(lines, vocab: dict[str, int], words: list[str]) -> list[int]:
    """Ids of ``line.split() + ['<eos>']`` for every line, adding new words to the vocabulary."""
    ids = []
    for line in lines:
        for word in line.split() + [EOS]:
            if word not in vocab:
                vocab[word] = len(words)
                words.append(word)
            ids.append(vocab[word])
    return ids


def _fingerprint(files: dict[str, Path]) -> list:
    return [CACHE_VERSION] + [
        [f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files.values()
    ]


def _read(files: dict[str, Path]) -> tuple[list[str], dict[str, torch.Tensor]]:
    vocab: dict[str, int] = {}
    words: list[str] = []
    ids = {}
    for split, path in files.items():
        with open(path, encoding="utf-8") as f:
            ids[split] = torch.tensor(tokenize_lines(f, vocab, words), dtype=torch.int64)
    return words, ids


@functools.lru_cache(maxsize=4)
def _load(folder: str, fingerprint: str) -> Corpus:
    files = split_files(folder)
    cache = Path(folder) / CACHE_NAME
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            if saved["fingerprint"] == fingerprint:
                return Corpus(saved["words"], *(saved[s] for s in SPLITS), path=folder)
        except Exception as exc:  # a damaged or foreign cache is rebuilt, never trusted
            log.warning("Ignoring the corpus cache %s: %s", cache, exc)
    words, ids = _read(files)
    state = {"fingerprint": fingerprint, "words": words, **ids}
    try:
        atomic_write(cache, lambda f: torch.save(state, f))
    except OSError as exc:  # a read-only data folder: keep going without a cache
        log.warning("Could not cache the corpus in %s: %s", cache, exc)
    return Corpus(words, *(ids[s] for s in SPLITS), path=folder)


def load_corpus(folder: str | os.PathLike) -> Corpus:
    """Reads (or takes from the cache) the corpus in ``folder``.

    Raises:
        UserError: the folder lacks the three files.
    """
    folder = str(Path(folder).resolve())
    return _load(folder, repr(_fingerprint(split_files(folder))))


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """Cuts a token stream into ``bsz`` columns of ``len // bsz`` rows; the tail is dropped.

    Column ``b`` holds tokens ``[b * rows, (b + 1) * rows)``.

    Raises:
        ValueError: fewer tokens than columns.
    """
    rows = data.size(0) // bsz
    if rows < 2:
        raise ValueError(f"{data.size(0)} tokens are too few for batches of {bsz} columns.")
    return data[: rows * bsz].view(bsz, rows).t().contiguous()


def rank_columns(source: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s contiguous block of a batchified tensor's columns.

    Under torchrun the language jobs batchify each split at ``world_size`` times the
    per-process batch and give rank ``r`` columns ``[r B, (r + 1) B)``: the processes together
    hold exactly the columns (and rows) of one process at the whole batch, every token once.
    When the columns do not divide evenly (evaluation's 10, the test's 1), the first ranks get
    one more, and a rank may get none.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return torch.tensor_split(source, world_size, dim=1)[rank].contiguous()


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``i .. i + L`` as input and the rows one later as targets (flattened), with
    ``L = min(seq_len, rows - 1 - i)``."""
    length = min(seq_len, source.size(0) - 1 - i)
    return source[i : i + length], source[i + 1 : i + 1 + length].reshape(-1)


def sample_seq_len(bptt: int, jitter: bool, rng=np.random, max_delta: int = 20) -> int:
    """One BPTT length as the original draws it.

    The base is ``bptt`` with probability 0.95, else ``bptt / 2``. Training (``jitter``)
    draws ``max(5, int(normal(base, 5)))`` capped at ``bptt + max_delta``; the search takes
    ``int(base)``. ``rng`` is numpy's global generator by default, as in the original, so a
    checkpoint's numpy state makes the lengths of a resumed epoch the same.
    """
    base = bptt if rng.random() < 0.95 else bptt / 2.0
    if not jitter:
        return int(base)
    return min(max(5, int(rng.normal(base, 5))), bptt + max_delta)


def bptt_windows(
    rows: int, bptt: int, jitter: bool, rng=np.random, start: int = 0
) -> Iterator[tuple[int, int]]:
    """``(i, seq_len)`` of each training step of an epoch over ``rows`` rows, from row
    ``start`` (a resumed epoch's next window; 0 for a whole epoch).

    ``i`` advances by the sampled length even where :func:`get_batch` cuts the last window
    short, and the loop runs while ``i < rows - 2``, as the original's. Each length is drawn
    when its window is asked for, so the generator's state after ``k`` windows is the state
    from which the rest of the epoch draws.
    """
    i = start
    while i < rows - 2:
        seq_len = sample_seq_len(bptt, jitter, rng)
        yield i, seq_len
        i += seq_len


def eval_windows(rows: int, bptt: int) -> Iterator[tuple[int, int]]:
    """``(i, bptt)`` of evaluation: fixed windows over ``rows - 1`` rows."""
    for i in range(0, rows - 1, bptt):
        yield i, bptt


class Windows:
    """One epoch's training batches: ``(x, y)`` BPTT windows in order; ``seq_len`` is the
    sampled length of the window last given (the lr scale uses it, not the cut length).

    The windows keep their place for a mid-epoch checkpoint (:mod:`sharpdarts.engine.loop`):
    the row where the next window starts (:meth:`state_dict`). Their count is not known before
    the epoch ends (each length is drawn from numpy's global generator as its window is asked
    for), but whether the window just given was the last is (:attr:`exhausted`). A mid-epoch
    checkpoint's numpy state is then the one the rest of the epoch draws from.
    """

    sampler = None  # the loop asks loaders for a sampler to set the epoch of

    def __init__(self, source: torch.Tensor, bptt: int, jitter: bool):
        self.source, self.bptt, self.jitter = source, bptt, jitter
        self.seq_len = bptt
        self.start = 0
        self.next_row = 0  # where the window after the one last given starts
        self._resume_row: int | None = None

    def __iter__(self):
        begin, self._resume_row = self._resume_row or 0, None
        self.next_row = begin
        rows = self.source.size(0)
        for i, seq_len in bptt_windows(rows, self.bptt, self.jitter, start=begin):
            self.seq_len, self.start, self.next_row = seq_len, i, i + seq_len
            yield get_batch(self.source, i, seq_len)

    @property
    def exhausted(self) -> bool:
        """Whether the window last given was the epoch's last (as :func:`bptt_windows` ends)."""
        return self.next_row >= self.source.size(0) - 2

    def state_dict(self) -> dict:
        """The place in the epoch: the row where the next window starts."""
        return {"row": self.next_row}

    def load_state_dict(self, state: dict) -> None:
        """The next pass starts at the saved row (once; the passes after it at row 0)."""
        self._resume_row = int(state["row"])


def synthetic_corpus(vocab: int = 50, sizes=(800, 240, 240), seed: int = 0) -> Corpus:
    """A small corpus with learnable structure (an order-1 Markov chain over ``vocab`` words,
    sentences ending in ``<eos>``), for smoke runs without data files."""
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.full(vocab, 0.1), size=vocab)
    words = [EOS] + [f"w{k}" for k in range(1, vocab)]
    streams, state = [], 1
    for n in sizes:
        ids = np.empty(n, dtype=np.int64)
        for t in range(n):
            state = rng.choice(vocab, p=transition[state])
            ids[t] = state
        streams.append(torch.from_numpy(ids))
    return Corpus(words, *streams, path="synthetic")


# ---- registered corpora -----------------------------------------------------------------------
def folder_builder(*names: str):
    """A DatasetSpec builder reading the first of ``root/<name>`` that holds a corpus (or
    ``root`` itself); the same Corpus serves as 'train' and 'test'."""

    def build(root, train, transform, download, seed):
        for name in names:
            folder = Path(root) / name
            if folder.is_dir():
                return load_corpus(folder)
        if (Path(root) / "train.txt").is_file():
            return load_corpus(root)
        looked = ", ".join(str(Path(root).resolve() / n) for n in names)
        raise UserError(
            f"No language-model corpus in {looked}: each needs train.txt, valid.txt and "
            "test.txt, as awd-lstm-lm's getdata.sh writes them. Point --data (or "
            "$SHARPDARTS_DATA) at the folder that holds it."
        )

    return build


def synthetic_builder(root, train, transform, download, seed):
    return synthetic_corpus(seed=seed)

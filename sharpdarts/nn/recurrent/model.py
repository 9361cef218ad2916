"""DARTS's language models: an embedding, one recurrent cell, a tied softmax decoder.

``RNNModel`` trains a fixed recurrent genotype; ``RNNSearchModel`` holds the search cell and
its architecture parameters. Both keep the original's module names (``encoder``, ``rnns.0``,
``decoder``) so that :func:`sharpdarts.nn.models.load_original_state_dict` takes the
original's state dicts, and count parameters as it does: ``V (n + 1) + (4 + 2 S) n^2`` with
the tied embedding counted once (22,960,000 for DARTS's PTB model).

Dropouts, in training only (``docs/facts/darts_rnn.md``, section 2): embedding dropout drops
whole words from the embedding matrix (``dropoute``); locked dropout drops the same units at
every time step, on the embedded input (``dropouti``) and on the cell's output
(``dropout``); the cell's own variational masks use ``dropoutx`` and ``dropouth``.
"""

from __future__ import annotations

from collections.abc import Sequence

import gin
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core.genotypes import RNN_PRIMITIVES
from sharpdarts.core.recurrent_genotypes import (
    RNN_CONCAT,
    RNN_STEPS,
    RecurrentGenotype,
    parse_recurrent,
)
from sharpdarts.nn.recurrent.cells import INIT_RANGE, DARTSCell, DARTSCellSearch


def embedded_dropout(embed: nn.Embedding, words: torch.Tensor, dropout: float) -> torch.Tensor:
    """Looks words up in an embedding whose rows (whole words) are dropped with ``dropout``."""
    weight = embed.weight
    if dropout:
        keep = 1.0 - dropout
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(keep) / keep
        weight = weight * mask
    return F.embedding(words, weight)


def locked_dropout(x: torch.Tensor, dropout: float, training: bool) -> torch.Tensor:
    """Dropout of (T, B, D) with one (1, B, D) mask shared by all time steps."""
    if not training or not dropout:
        return x
    keep = 1.0 - dropout
    mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(keep) / keep
    return x * mask


class _LanguageModel(nn.Module):
    """Embedding, one cell, tied decoder; the cell is built by the subclass."""

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        nhid: int,
        nhidlast: int,
        dropout: float,
        dropouth: float,
        dropoutx: float,
        dropouti: float,
        dropoute: float,
    ):
        super().__init__()
        if not ninp == nhid == nhidlast:
            raise ValueError(
                f"DARTS's language model needs ninp == nhid == nhidlast (the "
                f"decoder is tied to the embedding), got {ninp}, {nhid}, {nhidlast}."
            )
        self.ntoken, self.ninp, self.nhid, self.nhidlast = ntoken, ninp, nhid, nhidlast
        self.dropout, self.dropouth, self.dropoutx = dropout, dropouth, dropoutx
        self.dropouti, self.dropoute = dropouti, dropoute
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnns = nn.ModuleList([self._build_cell()])
        self.decoder = nn.Linear(ninp, ntoken)
        self.decoder.weight = self.encoder.weight
        self.encoder.weight.data.uniform_(-INIT_RANGE, INIT_RANGE)
        self.decoder.bias.data.zero_()

    def init_hidden(self, bsz: int) -> list[torch.Tensor]:
        """The zero hidden state for a batch of ``bsz`` sequences: ``[zeros(1, bsz, nhid)]``."""
        weight = self.encoder.weight
        return [weight.new_zeros(1, bsz, self.nhid)]

    def _run_cell(self, cell, x, h):
        return cell(x, h)

    def forward(self, input: torch.Tensor, hidden: list[torch.Tensor], return_h: bool = False):
        """Log-probabilities of the next word at every position.

        Args:
            input: (T, B) word ids.
            hidden: as :meth:`init_hidden` gives (or the last call returned).
            return_h: also return the cell's raw outputs and the dropped-out outputs (lists of
                one (T, B, nhid) tensor each), for the AR/TAR penalties.

        Returns:
            ``(log_probs, hidden)`` with ``log_probs`` of shape (T, B, ntoken), plus
            ``raw_outputs, outputs`` when ``return_h``.
        """
        emb = embedded_dropout(self.encoder, input, self.dropoute if self.training else 0.0)
        emb = locked_dropout(emb, self.dropouti, self.training)
        raw_output, new_hidden, raw_outputs = emb, [], []
        for layer, cell in enumerate(self.rnns):
            raw_output, h = self._run_cell(cell, raw_output, hidden[layer])
            new_hidden.append(h)
            raw_outputs.append(raw_output)
        output = locked_dropout(raw_output, self.dropout, self.training)
        log_probs = F.log_softmax(self.decoder(output), dim=-1)
        if return_h:
            return log_probs, new_hidden, raw_outputs, [output]
        return log_probs, new_hidden


@gin.configurable
class RNNModel(_LanguageModel):
    """DARTS's language model for a fixed recurrent genotype.

    Args:
        ntoken: vocabulary size.
        ninp, nhid, nhidlast: embedding, hidden and last hidden widths (all equal).
        dropout: locked dropout of the cell's output.
        dropouth: the cell's hidden-state dropout.
        dropoutx: the cell's input dropout.
        dropouti: locked dropout of the embedded input.
        dropoute: embedding (word) dropout.
        genotype: a :class:`RecurrentGenotype`, a registry name or a genotype dict.
    """

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        nhid: int,
        nhidlast: int,
        dropout: float = 0.5,
        dropouth: float = 0.5,
        dropoutx: float = 0.5,
        dropouti: float = 0.5,
        dropoute: float = 0.1,
        genotype="DARTS_V2_RNN",
    ):
        genotype = genotypes_lib.resolve(genotype)
        if not isinstance(genotype, RecurrentGenotype):
            raise ValueError(
                f"RNNModel needs a recurrent genotype (with 'recurrent' and "
                f"'concat'), got a {genotype.layout!r} genotype."
            )
        self.genotype = genotype
        super().__init__(
            ntoken, ninp, nhid, nhidlast, dropout, dropouth, dropoutx, dropouti, dropoute
        )

    def _build_cell(self):
        return DARTSCell(self.ninp, self.nhid, self.dropouth, self.dropoutx, self.genotype)


@gin.configurable
class RNNSearchModel(_LanguageModel):
    """DARTS's recurrent search model: the search cell and its architecture parameters.

    The architecture parameters ``alphas`` ((steps (steps + 1) / 2) x ops, ``1e-3 * randn``)
    are a parameter of the model but not of :meth:`weights`, which the weight optimizer and
    the gradient clip see, as in the original (where they are outside ``parameters()``).

    Args:
        ntoken, ninp, nhid, nhidlast, dropout, dropouth, dropoutx, dropouti, dropoute: as
            :class:`RNNModel`.
        primitives: the ops (a list or the name of a primitive set); 'none' first by default.
        steps: nodes of the cell.
        concat: how many of the last states form the output.
        compile_backend: ``torch.compile`` backend of the search cell's time step
            ('inductor'; see :class:`DARTSCellSearch`); None (the default) runs eagerly.
    """

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        nhid: int,
        nhidlast: int,
        dropout: float = 0.5,
        dropouth: float = 0.5,
        dropoutx: float = 0.5,
        dropouti: float = 0.5,
        dropoute: float = 0.1,
        primitives: Sequence[str] = RNN_PRIMITIVES,
        steps: int = RNN_STEPS,
        concat: int = RNN_CONCAT,
        compile_backend: str | None = None,
    ):
        self.primitives = list(primitives)
        self.steps, self.concat = steps, concat
        self.compile_backend = compile_backend
        super().__init__(
            ntoken, ninp, nhid, nhidlast, dropout, dropouth, dropoutx, dropouti, dropoute
        )
        edges = steps * (steps + 1) // 2
        self.alphas = nn.Parameter(1e-3 * torch.randn(edges, len(self.primitives)))

    def _build_cell(self):
        return DARTSCellSearch(
            self.ninp,
            self.nhid,
            self.dropouth,
            self.dropoutx,
            self.primitives,
            self.steps,
            self.concat,
            self.compile_backend,
        )

    def _run_cell(self, cell, x, h):
        return cell(x, h, F.softmax(self.alphas, dim=-1))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters, trained by the architect."""
        return [self.alphas]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but the architecture's (the weight optimizer's and the clip's)."""
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def genotype(self) -> RecurrentGenotype:
        """The cell of the current architecture weights, by DARTS's recurrent rule."""
        probs = F.softmax(self.alphas.detach(), dim=-1).cpu().numpy()
        return parse_recurrent(probs, self.primitives, self.steps, self.concat)


def ar_tar_penalty(
    raw_outputs: list[torch.Tensor],
    outputs: list[torch.Tensor],
    alpha: float = 0.0,
    beta: float = 1e-3,
) -> torch.Tensor | float:
    """Activation regularisation (AR) and temporal activation regularisation (TAR).

    ``alpha * mean(dropped_output ** 2) + beta * mean((raw_{t+1} - raw_t) ** 2)`` over the last
    layer, as the original adds to the training loss (AR is skipped when ``alpha`` is 0).

    Args:
        raw_outputs: the cell's outputs before dropout (``forward(..., return_h=True)``).
        outputs: the outputs after locked dropout.
        alpha: AR weight.
        beta: TAR weight.
    """
    penalty = 0.0
    if alpha > 0:
        penalty = penalty + alpha * outputs[-1].pow(2).mean()
    raw = raw_outputs[-1]
    return penalty + beta * (raw[1:] - raw[:-1]).pow(2).mean()

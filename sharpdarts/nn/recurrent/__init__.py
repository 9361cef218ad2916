"""DARTS's recurrent cells and language models (facts: ``docs/facts/darts_rnn.md``)."""
from sharpdarts.nn.recurrent.cells import RNN_OPS, DARTSCell, DARTSCellSearch  # noqa: F401
from sharpdarts.nn.recurrent.model import RNNModel, RNNSearchModel  # noqa: F401

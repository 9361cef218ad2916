"""DARTS's recurrent cells and language models (see ``reference/FACTS_RNN.md``)."""
from sharpdarts.nn.recurrent.cells import RNN_OPS, DARTSCell, DARTSCellSearch  # noqa: F401
from sharpdarts.nn.recurrent.model import RNNModel, RNNSearchModel  # noqa: F401

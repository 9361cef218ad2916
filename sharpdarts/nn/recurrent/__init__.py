"""DARTS's recurrent cells and language models (see ``reference/FACTS_RNN.md``)."""

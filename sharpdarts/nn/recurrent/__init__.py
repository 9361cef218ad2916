"""DARTS's recurrent cells and language models (facts: ``docs/facts/darts_rnn.md``)."""

"""Data: datasets described once, their transforms and on-disk formats, and the loaders.

- ``specs``: the ``DATASETS`` registry of every dataset's description (``DatasetSpec``:
  image shape, classes, statistics, crop, AutoAugment policy, reader, extra test sets),
  the text corpora included;
- ``transforms``: ``Cutout`` and the train and test pipelines (AutoAugment via torchvision);
- ``datasets``: the readers of the real on-disk formats (CIFAR-10, CIFAR-100, CIFAR-10.1,
  ImageNet folders, MNIST, Fashion-MNIST, SVHN) and two offline sets (digits, synthetic);
- ``imagenet16``: the 16 x 16 downsampled ImageNet's pickles (NAS-Bench-201's ImageNet16-120);
- ``nb201_splits``: NAS-Bench-201's train / valid / test splits of its three datasets;
- ``bundle``: ``build_datasets``, the one gin-configurable entry point the engine calls;
- ``loaders``: the DARTS search split and ``make_loader``;
- ``corpus``: word-level language-model corpora (PTB, WikiText-2), batchify and BPTT windows;
- ``pydoc_corpus``: an offline corpus made from the Python documentation CPython ships.

Import each name from its module.
"""

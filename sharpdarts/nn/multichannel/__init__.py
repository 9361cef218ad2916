"""Differentiable hyperparameter grid search (HyperCuboid): the multi-channel supernet, its
weighted graph, path extraction and the path models trained afterwards.

The grid (``docs/facts/sharpdarts.md``, "HyperCuboid"): ``layers`` grid layers, each a
stride-1 stage followed by a stride-2 stage. The feature maps come in the channel widths
``Cs = 2 ** (floor(log2 C) + k)``, ``k = 0 .. steps - 1`` ({32, 64, 128, 256} for C = 36). At
every stage every ``C_in -> C_out`` pair is joined by each primitive, and the outputs with the
same ``C_out`` are summed. A 3x3 conv + BN stem per width feeds the first stage; a
SharpSepConv head per width (``c -> head_channels``) is summed, pooled and classified.

Architecture weights: one parameter ``alphas`` of shape ``[2, layers, n, n, ops]`` indexed
``[stride index (0: stride 1, 1: stride 2), layer, C_in index, C_out index, op]``. The softmax
is taken per ``(stride, layer)`` block over ``C_in x C_out x op`` (32 entries for the paper's
grid). This is the layout of the published raw weights: ``MULTI_CHANNEL_*.normal`` is the
stride-1 half ``[layers, n, n, ops]`` and ``.reduce`` the stride-2 half.

Op order: the published raw weights (and hence the published longest paths) use
``GRID_PRIMITIVES = ['SharpSepConv', 'ResizablePool']``, the op order of the original
network; ``genotypes.MULTICHANNELNET_PRIMITIVES`` lists the same two ops the other way
round. Read with that order, the published weights do not give the published paths, so
``GRID_PRIMITIVES`` is the default here (see ``tests/test_multichannel.py``).

Modules: ``graph`` (node names, the weighted DAG, longest and greedy paths, path checks; no
torch) and ``networks`` (:class:`MultiChannelNetwork`, the supernet, and :class:`PathNetwork`,
the network of one path).
"""

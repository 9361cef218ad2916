"""The one place where torch classes are made gin-configurable.

``gin.torch`` is not imported (it needs distutils, gone in Python 3.12); the few classes the
experiments bind are registered here instead, under the ``torch`` module name, so a config
says e.g. ``train.optimizer = @torch.optim.SGD``.
"""
import gin
import torch

gin.external_configurable(torch.optim.SGD, module="torch.optim")
gin.external_configurable(torch.optim.Adam, module="torch.optim")
gin.external_configurable(torch.optim.AdamW, module="torch.optim")
gin.external_configurable(torch.optim.lr_scheduler.CosineAnnealingLR, module="torch.optim.lr_scheduler")
gin.external_configurable(torch.nn.CrossEntropyLoss, module="torch.nn")

"""The README's commands for DARTS's published CIFAR-10 and ImageNet weights.

The checkpoints are written as the original code saves them (``cnn/train.py``: a plain
``state_dict``; ``cnn/train_imagenet.py``: ``{'state_dict': ...}`` of a DataParallel model;
both from PyTorch 0.3, so without ``num_batches_tracked``; both trained with ``--auxiliary``,
which the DARTS README's test commands pass too), in DARTS's own module layout, and evaluated
with exactly the README's command lines on small files in the real dataset formats.
"""

import json

import pytest
import torch
from test_data import write_cifar10, write_cifar10_1, write_imagenet
from torchvision import datasets
from torchvision import transforms as T

from sharpdarts.core import genotypes
from sharpdarts.face import cli
from sharpdarts.nn.models import NetworkCIFAR, NetworkImageNet, load_original_state_dict

BN = ["weight", "bias", "running_mean", "running_var"]


def darts_cell_keys(prefix: str, genotype, reduction: bool, reduction_prev: bool) -> list[str]:
    """One cell's keys in DARTS's ``cnn/model.py`` / ``operations.py`` layout."""
    keys = []
    if reduction_prev:  # FactorizedReduce
        keys += [prefix + "preprocess0.conv_1.weight", prefix + "preprocess0.conv_2.weight"]
        keys += [prefix + f"preprocess0.bn.{k}" for k in BN]
    else:  # ReLUConvBN: ReLU, conv, BN
        keys += [prefix + "preprocess0.op.1.weight"] + [
            prefix + f"preprocess0.op.2.{k}" for k in BN
        ]
    keys += [prefix + "preprocess1.op.1.weight"] + [prefix + f"preprocess1.op.2.{k}" for k in BN]
    for j, (name, index) in enumerate(genotype.reduce if reduction else genotype.normal):
        q = f"{prefix}_ops.{j}.op."
        if name.startswith("sep_conv"):  # two (ReLU, depthwise, pointwise, BN) stacks
            keys += [q + f"{n}.weight" for n in (1, 2, 5, 6)] + [
                q + f"{n}.{k}" for n in (3, 7) for k in BN
            ]
        elif name.startswith("dil_conv"):  # one ReLU, dilated depthwise, pointwise, BN
            keys += [q + "1.weight", q + "2.weight"] + [q + f"3.{k}" for k in BN]
        elif name == "skip_connect" and reduction and index < 2:  # FactorizedReduce
            keys += [f"{prefix}_ops.{j}.conv_1.weight", f"{prefix}_ops.{j}.conv_2.weight"]
            keys += [f"{prefix}_ops.{j}.bn.{k}" for k in BN]
    return keys


def darts_keys(imagenet: bool, layers: int) -> set[str]:
    """Every key of DARTS's NetworkCIFAR / NetworkImageNet with the auxiliary head."""
    genotype = genotypes.get("DARTS_V2")
    if imagenet:
        keys = ["stem0.0.weight", "stem0.3.weight", "stem1.1.weight"]
        keys += [f"{m}.{k}" for m in ("stem0.1", "stem0.4", "stem1.2") for k in BN]
        # DARTS's ImageNet head has no batch norm after its 2x2 convolution.
        aux = ["features.2.weight", "features.5.weight"] + [f"features.3.{k}" for k in BN]
    else:
        keys = ["stem.0.weight"] + [f"stem.1.{k}" for k in BN]
        aux = ["features.2.weight", "features.5.weight"] + [
            f"features.{n}.{k}" for n in (3, 6) for k in BN
        ]
    reduction_prev = imagenet
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        keys += darts_cell_keys(f"cells.{i}.", genotype, reduction, reduction_prev)
        reduction_prev = reduction
    keys += ["auxiliary_head." + k for k in aux + ["classifier.weight", "classifier.bias"]]
    return set(keys + ["classifier.weight", "classifier.bias"])


def as_saved_by_darts(model) -> dict[str, torch.Tensor]:
    """The model's tensors as a PyTorch 0.3 ``state_dict`` (no ``num_batches_tracked``)."""
    model.train()
    with torch.no_grad():  # move the BN statistics off their defaults
        model(torch.randn(2, 3, *((224, 224) if isinstance(model, NetworkImageNet) else (32, 32))))
    model.eval()
    return {
        k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }


def evaluate(tmp_path, capsys, *args) -> dict:
    code = cli.main([str(a) for a in ("evaluate", *args, "--results", tmp_path / "results")])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out[: out.out.rindex("}") + 1])


def top1_error(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(images)[0]
    return 100.0 * (logits.argmax(1) != labels).float().mean().item()


def test_darts_cifar10_weights_with_the_readmes_command(tmp_path, capsys):
    torch.manual_seed(0)
    model = NetworkCIFAR(36, 10, 20, True, "DARTS_V2", op_dict="DARTS_OPS")
    state = as_saved_by_darts(model)
    assert set(state) == darts_keys(imagenet=False, layers=20)
    # DARTS reports 3.3M parameters (the auxiliary head is not counted).
    assert sum(v.numel() for k, v in model.named_parameters() if "auxiliary" not in k) == 3_349_342
    torch.save(state, tmp_path / "cifar10_model.pt")
    data = tmp_path / "data"
    written = write_cifar10(data, per_batch=4)
    write_cifar10_1(data, n=6)
    final = evaluate(
        tmp_path,
        capsys,
        tmp_path / "cifar10_model.pt",
        "--arch",
        "DARTS_V2",
        "--dataset",
        "cifar10",
        "--gin_param",
        "NetworkCIFAR.op_dict='DARTS_OPS'",
        "--data",
        data,
    )
    images, labels = written["test_batch"]
    # DARTS's test.py: ToTensor, then Normalize with its CIFAR-10 statistics.
    mean = torch.tensor([0.49139968, 0.48215827, 0.44653124]).view(1, 3, 1, 1)
    std = torch.tensor([0.24703233, 0.24348505, 0.26158768]).view(1, 3, 1, 1)
    x = (torch.tensor(images).float().div(255).view(-1, 3, 32, 32) - mean) / std
    assert final["test_error_top1"] == pytest.approx(
        top1_error(model, x, torch.tensor(labels)), abs=1e-6
    )
    assert final["params_m"] == pytest.approx(3.349342)


def test_darts_imagenet_weights_with_the_readmes_command(tmp_path, capsys):
    torch.manual_seed(0)
    model = NetworkImageNet(48, 1000, 14, True, "DARTS_V2", op_dict="DARTS_OPS", auxiliary_bn=False)
    state = as_saved_by_darts(model)
    assert set(state) == darts_keys(imagenet=True, layers=14)
    # DARTS reports 4.7M parameters.
    assert sum(v.numel() for k, v in model.named_parameters() if "auxiliary" not in k) == 4_718_752
    torch.save(
        {"epoch": 250, "state_dict": {"module." + k: v for k, v in state.items()}},
        tmp_path / "imagenet_model.pt",
    )
    data = tmp_path / "data"
    write_imagenet(data)
    final = evaluate(
        tmp_path,
        capsys,
        tmp_path / "imagenet_model.pt",
        "--arch",
        "DARTS_V2",
        "--dataset",
        "imagenet",
        "--gin_param",
        "NetworkImageNet.op_dict='DARTS_OPS'",
        "--gin_param",
        "NetworkImageNet.auxiliary_bn=False",
        "--data",
        data,
    )
    assert final["params_m"] == pytest.approx(4.718752)
    # DARTS's test_imagenet.py: Resize(256), CenterCrop(224), ToTensor, Normalize.
    steps = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    folder = datasets.ImageFolder(data / "imagenet" / "val", steps)
    x = torch.stack([image for image, _ in folder])
    y = torch.tensor([label for _, label in folder])
    with torch.no_grad():
        top5 = model(x)[0].topk(5, 1).indices
    assert final["test_error_top1"] == pytest.approx(
        100.0 * (top5[:, 0] != y).float().mean().item()
    )
    assert final["test_error_top5"] == pytest.approx(
        100.0 * (~(top5 == y[:, None]).any(1)).float().mean().item()
    )


def test_weights_without_the_auxiliary_head_get_a_hint(tmp_path, capsys):
    model = NetworkCIFAR(8, 10, 5, False, "DARTS_V2", op_dict="DARTS_OPS")
    torch.save(model.state_dict(), tmp_path / "no_aux.pt")
    data = tmp_path / "data"
    write_cifar10(data, per_batch=2)
    write_cifar10_1(data, n=2)
    small = [
        "--gin_param",
        "NetworkCIFAR.C=8",
        "--gin_param",
        "NetworkCIFAR.layers=5",
        "--gin_param",
        "NetworkCIFAR.op_dict='DARTS_OPS'",
    ]
    args = [
        "evaluate",
        tmp_path / "no_aux.pt",
        "--arch",
        "DARTS_V2",
        "--data",
        data,
        "--results",
        tmp_path / "results",
        *small,
    ]
    assert cli.main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "no auxiliary head" in err and "NetworkCIFAR.auxiliary=False" in err
    assert not (tmp_path / "results" / "runs").exists()
    args += ["--gin_param", "NetworkCIFAR.auxiliary=False"]
    assert cli.main([str(a) for a in args]) == 0


def test_darts_imagenet_weights_in_a_sharpdarts_head_get_a_hint():
    darts = NetworkImageNet(8, 10, 5, True, "DARTS_V2", op_dict="DARTS_OPS", auxiliary_bn=False)
    with pytest.raises(ValueError, match=r"auxiliary_bn=False"):
        load_original_state_dict(
            NetworkImageNet(8, 10, 5, True, "DARTS_V2", op_dict="DARTS_OPS"), darts.state_dict()
        )
    load_original_state_dict(
        NetworkImageNet(8, 10, 5, True, "DARTS_V2", op_dict="DARTS_OPS", auxiliary_bn=False),
        darts.state_dict(),
    )

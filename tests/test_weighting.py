"""The scalar and max_w mixing schemes, on known weights and through their gradients."""

import pytest
import torch

from sharpdarts.nn import weighting


def test_scalar_is_the_softmax_weight():
    w = torch.tensor([0.2, 0.5, 0.3])
    assert torch.equal(weighting.scalar(w), w)


def test_max_w_known_values_per_row():
    w = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    expected = torch.tensor([[0.7, 1.0, 0.8], [1.0, 0.5, 0.7]])
    assert torch.allclose(weighting.max_w(w), expected)


@pytest.mark.parametrize("detach,expected_grad_of_top", [(False, -1.0), (True, 0.0)])
def test_max_w_gradient_through_the_max(detach, expected_grad_of_top):
    w = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    c = weighting.max_w(w, detach_max=detach)
    c[0].backward()  # c_0 = 1 - w_max + w_0
    assert w.grad[0].item() == pytest.approx(1.0)
    assert w.grad[1].item() == pytest.approx(expected_grad_of_top)
    assert w.grad[2].item() == 0.0
    w.grad = None
    weighting.max_w(w, detach_max=detach)[1].backward()  # the top op's own coefficient is 1
    assert w.grad.abs().sum().item() == pytest.approx(0.0 if not detach else 1.0)


def test_get_weighting_by_name():
    resolved = weighting.get_weighting("max_w")
    assert resolved.func is weighting.max_w and resolved.keywords == {"detach_max": False}
    assert weighting.get_weighting("scalar") is weighting.scalar
    with pytest.raises(KeyError, match="scalar"):
        weighting.get_weighting("maxw")


def test_a_user_weighting_registers_by_name():
    @weighting.WEIGHTINGS.register("halved")
    def halved(w):
        return w / 2

    try:
        assert weighting.get_weighting("halved") is halved
        w = torch.full((3,), 0.5)
        assert torch.equal(weighting.get_weighting("halved")(w), w / 2)
    finally:
        del weighting.WEIGHTINGS["halved"]
    with pytest.raises(KeyError, match="Known schemes: scalar, max_w"):
        weighting.get_weighting("halved")


def test_max_w_detach_max_binding_is_read_when_the_network_is_built():
    """`max_w.detach_max` is resolved at build time, so gin's operative config records it
    (the run's binding check then sees that it took effect) and the network uses it."""
    import gin

    from sharpdarts.nn.models import SearchNetwork

    gin.clear_config()
    gin.parse_config("max_w.detach_max = True")
    try:
        net = SearchNetwork(
            C=4, num_classes=3, layers=2, primitives="DARTS_PRIMITIVES", weighting="max_w"
        )
        assert "max_w.detach_max = True" in gin.operative_config_str()
    finally:
        gin.clear_config()
    w = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    net.weighting(w)[0].backward()
    # With the max detached, the gradient of c_0 = 1 - max + w_0 reaches only w_0.
    assert w.grad.tolist() == [1.0, 0.0, 0.0]

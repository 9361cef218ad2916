"""Mixed-op weighting schemes: how softmax(alpha) becomes each op's coefficient.

A scheme maps softmax weights ``w`` (the last dimension runs over the ops of one edge, or over
a whole block in the multi-channel grid) to coefficients ``c``; a mixed op outputs
``sum_i c_i * op_i(x)``. Genotypes are always read from ``w`` itself, never from ``c``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gin
import torch

from sharpdarts.registry import Registry, unknown_name

Weighting = Callable[[torch.Tensor], torch.Tensor]

# Users add a scheme with ``@WEIGHTINGS.register('my_scheme')`` (e.g. in a module that a .gin
# file imports) and name it in a config: ``SearchNetwork.weighting = 'my_scheme'``.
WEIGHTINGS: Registry[Weighting] = Registry(
    "weighting", "WEIGHTINGS", hint="Schemes are registered with @WEIGHTINGS.register('name')."
)


@WEIGHTINGS.register("scalar")
def scalar(weights: torch.Tensor) -> torch.Tensor:
    """The DARTS baseline: each op is scaled by its softmax weight."""
    return weights


@WEIGHTINGS.register("max_w")
def max_w(weights: torch.Tensor, detach_max: bool = False) -> torch.Tensor:
    """Max-W regularization: ``c_i = 1 - max_j w_j + w_i``.

    The top op always gets coefficient 1 and every other op 1 minus its gap to the top.

    Args:
        weights: softmax weights, ops (or the block) in the last dimension.
        detach_max: stop the gradient through the max. The original code passes it (its
            comment says the authors meant to block it), so the default follows the code.
    """
    top = weights.max(dim=-1, keepdim=True).values
    if detach_max:
        top = top.detach()
    return 1.0 - top + weights


@gin.configurable("max_w")
def configured_max_w(detach_max: bool = False) -> Weighting:
    """Max-W with its options bound now, when a network is built (``max_w.detach_max``).

    Reading the binding at build time, not at every forward, is what lets the run check that
    ``max_w.detach_max`` took effect (a binding read only later would look unused).
    """
    return functools.partial(max_w, detach_max=detach_max)


# Schemes whose options come from gin: resolved by calling these when a network is built.
_CONFIGURED: dict[str, Callable[[], Weighting]] = {"max_w": configured_max_w}


def get_weighting(weighting: str | Weighting) -> Weighting:
    """Resolves a scheme given by name (``'scalar'``, ``'max_w'``) or passes a callable through.

    Raises:
        UnknownNameError: (a KeyError) an unknown name, with close matches.
    """
    if callable(weighting):
        return weighting
    if weighting not in WEIGHTINGS:
        # A handful of schemes: name them all, not only the close ones.
        raise unknown_name(
            "weighting",
            weighting,
            WEIGHTINGS,
            where="in WEIGHTINGS",
            hint=f"Known schemes: {', '.join(WEIGHTINGS)}.",
        )
    if weighting in _CONFIGURED and WEIGHTINGS[weighting] is max_w:
        return _CONFIGURED[weighting]()
    return WEIGHTINGS[weighting]

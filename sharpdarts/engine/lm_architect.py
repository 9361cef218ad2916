"""Architecture steps of the recurrent search (the original ``rnn/architect.py``).

One step per training step updates the search model's ``alphas`` with Adam (lr 3e-3,
betas (0.9, 0.999), weight decay 1e-3), from a validation batch whose hidden state the caller
carries from step to step (the step returns the next one):

- first order: the gradient of the validation NLL at the current weights;
- second order (unrolled): the validation NLL at the virtual weights
  ``w' = w - eta (c g + wd w)``, where ``g`` is the training NLL's gradient from the training
  hidden state, clipped to global norm 0.25 (``c = 0.25 / (|g| + 1e-6)`` applied only when
  below 1), minus ``eta c`` times a finite-difference Hessian-vector product with the clipped
  gradient ``v`` of that loss in ``w'``: ``(d_alpha L_train(w + R v) - d_alpha L_train(w - R v))
  / 2R``, ``R = 0.01 / |v|``.

As the original does: ``eta`` is the weight optimizer's current (sequence-length scaled) lr,
``c`` scales the Hessian term even when it is above 1 (no clipping happened), and the tied
embedding is *not* stepped in ``w'`` unless ``step_embedding=True`` (the original reloads the
old decoder weight over it; docs/facts/darts_rnn.md, section 6). Every forward runs in
training mode, so dropout masks are drawn and batch-norm statistics are updated, as the
original's are.

First order takes the gradient of the alphas only. The virtual validation pass of the
unrolled step runs on a scratch copy of the batch-norm buffers, as the original's runs on its
throwaway model. ``copy_network=True`` computes the same step the original's way instead (the
yardstick of benchmarks/lm_search_step.py and tests/test_lm_reference.py): first order by
``backward()`` over every parameter; second order with a deep copy of the model holding
``w'``, a ``backward()`` over all of its parameters, and the Hessian passes on the model's own
weights shifted in place (restored exactly afterwards).

The virtual weights are passed to :func:`torch.func.functional_call`: no copy of the model
is built, and the real weights are never changed in place, so they are bit-identical after
the step.

Under torchrun every gradient is averaged over the processes where it is taken
(:func:`_grads`), before any norm is computed from it: the clip coefficients, ``w'``, the
vector and the radius are then the same on every rank, and the step equals one process's step
on the union of the ranks' columns (the losses are means over equally many tokens).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import gin
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sharpdarts.engine.context import average_over_processes


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d inputs, averaged over the processes of a distributed search (in one
    process: the gradients themselves)."""
    return average_over_processes(list(torch.autograd.grad(loss, list(inputs))))


def _clip_coef(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The original's ``_clip``: the coefficient ``max_norm / (norm + 1e-6)``; the caller
    scales the gradients only when it is below 1."""
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return max_norm / (norm + 1e-6)


@gin.configurable(denylist=["model"])
class RecurrentArchitect:
    """Steps a :class:`~sharpdarts.nn.recurrent.model.RNNSearchModel`'s ``alphas``.

    Args:
        model: the search model.
        order: 1 (first order) or 2 (unrolled).
        lr, betas, weight_decay: Adam's settings for the alphas.
        grad_clip: the weights' gradient clip inside the unrolled step (the network's clip).
        network_weight_decay: the weight decay of the virtual weight step.
        step_embedding: also step the tied embedding in ``w'`` (the original does not).
        fd_radius: the finite-difference radius numerator (0.01).
        copy_network: step the original's way (module docstring): the same alphas, slower.
    """

    def __init__(
        self,
        model: nn.Module,
        order: int = 2,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-3,
        grad_clip: float = 0.25,
        network_weight_decay: float = 5e-7,
        step_embedding: bool = False,
        fd_radius: float = 1e-2,
        copy_network: bool = False,
    ):
        if order not in (1, 2):
            raise ValueError(f"The architect's order is 1 or 2, not {order!r}.")
        self.model, self.order = model, order
        self.grad_clip, self.network_weight_decay = grad_clip, network_weight_decay
        self.step_embedding, self.fd_radius = step_embedding, fd_radius
        self.copy_network = copy_network
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay
        )
        self.names = [name for name, _ in model.named_parameters() if name != "alphas"]

    # ---- losses --------------------------------------------------------------------------
    def _loss(self, params: dict | None, hidden, x, y, model: nn.Module | None = None):
        """NLL of a batch (and the next hidden state) with weights ``params`` (None: the
        model's own) of ``model`` (None: the searched model)."""
        model = self.model if model is None else model
        if params is None:
            log_probs, hidden = model(x, hidden)
        else:
            log_probs, hidden = functional_call(model, params, (x, hidden))
        return F.nll_loss(log_probs.view(-1, log_probs.size(-1)), y), hidden

    def _radius(self, vector: Sequence[torch.Tensor]) -> torch.Tensor:
        """The finite-difference radius ``fd_radius / |v|`` of the Hessian-vector product."""
        return self.fd_radius / torch.sqrt(sum(v.pow(2).sum() for v in vector))

    def _weights(self) -> list[torch.Tensor]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.names]

    # ---- steps ---------------------------------------------------------------------------
    def step(
        self, hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta: float
    ) -> list[torch.Tensor]:
        """One architecture step; returns the next (detached) validation hidden state."""
        if self.copy_network:
            return self._step_by_copy(
                hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta
            )
        self.optimizer.zero_grad(set_to_none=True)
        alphas = self.model.arch_parameters()
        if self.order == 1:
            # The weights detached: only the alphas' gradient is taken. Eager autograd skips
            # the weights' gradients anyway; a compiled cell's backward computes a gradient
            # for every input that requires one, so there this skips half its products.
            params = {n: w.detach() for n, w in zip(self.names, self._weights())}
            loss, hidden_next = self._loss(
                dict(params, alphas=alphas[0]), hidden_valid, x_valid, y_valid
            )
            grads = _grads(loss, alphas)
        else:
            grads, hidden_next = self._unrolled(
                hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta
            )
        for a, g in zip(alphas, grads):
            a.grad = g.detach()
        self.optimizer.step()
        return [h.detach() for h in hidden_next]

    def _unrolled(self, hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta):
        weights = self._weights()
        alphas = self.model.arch_parameters()
        loss, _ = self._loss(None, hidden_train, x_train, y_train)
        grads = _grads(loss, weights)
        coef = _clip_coef(grads, self.grad_clip)
        scale = torch.clamp(coef, max=1.0)
        virtual = {}
        with torch.no_grad():
            for name, w, g in zip(self.names, weights, grads):
                if name == "encoder.weight" and not self.step_embedding:
                    virtual[name] = w.detach().clone()
                else:
                    virtual[name] = w - eta * (g * scale + self.network_weight_decay * w)
        for v in virtual.values():
            v.requires_grad_(True)
        # Scratch buffers: the original's virtual pass updates its throwaway model's stats.
        scratch = {n: b.clone() for n, b in self.model.named_buffers()}
        params = dict(virtual, alphas=alphas[0], **scratch)
        val_loss, hidden_next = self._loss(params, hidden_valid, x_valid, y_valid)
        dalpha, *dweights = _grads(val_loss, [alphas[0]] + list(virtual.values()))
        vector_scale = torch.clamp(_clip_coef(dweights, self.grad_clip), max=1.0)
        vector = [d * vector_scale for d in dweights]
        hvp = self._hessian_vector_product(vector, weights, hidden_train, x_train, y_train)
        return [dalpha - eta * coef * hvp], hidden_next

    def _hessian_vector_product(self, vector, weights, hidden, x, y) -> torch.Tensor:
        alphas = self.model.arch_parameters()[0]
        radius = self._radius(vector)
        grads = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shifted = {n: w + sign * radius * v for n, w, v in zip(self.names, weights, vector)}
            loss, _ = self._loss(dict(shifted, alphas=alphas), hidden, x, y)
            grads.append(_grads(loss, [alphas])[0])
        return (grads[0] - grads[1]) / (2 * radius)

    # ---- the original's way (copy_network=True) ------------------------------------------
    def _step_by_copy(
        self, hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta: float
    ) -> list[torch.Tensor]:
        """:meth:`step` as the original's ``architect.step`` computes it."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:  # backward() over every parameter, as the original
            loss, hidden_next = self._loss(None, hidden_valid, x_valid, y_valid)
            loss.backward()
        else:
            hidden_next = self._unrolled_by_copy(
                hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta
            )
        self.optimizer.step()
        return [h.detach() for h in hidden_next]

    def _unrolled_by_copy(
        self, hidden_train, x_train, y_train, hidden_valid, x_valid, y_valid, eta: float
    ):
        weights = self._weights()
        loss, _ = self._loss(None, hidden_train, x_train, y_train)
        grads = torch.autograd.grad(loss, weights)
        coef = _clip_coef(grads, self.grad_clip)
        with torch.no_grad():
            if coef < 1:
                for g in grads:
                    g.mul_(coef)
            unrolled_model = copy.deepcopy(self.model)  # the original builds a new model here
            unrolled_model.zero_grad(set_to_none=True)
            unrolled = dict(unrolled_model.named_parameters())
            for name, w, g in zip(self.names, weights, grads):
                if name == "encoder.weight" and not self.step_embedding:
                    continue  # the original reloads the old (tied) decoder weight over it
                unrolled[name].copy_(w - eta * (g + self.network_weight_decay * w))
        del grads
        val_loss, hidden_next = self._loss(None, hidden_valid, x_valid, y_valid, unrolled_model)
        val_loss.backward()
        dalpha = unrolled_model.alphas.grad
        dtheta = [unrolled[n].grad for n in self.names]
        with torch.no_grad():
            vector_coef = _clip_coef(dtheta, self.grad_clip)
            if vector_coef < 1:
                for d in dtheta:
                    d.mul_(vector_coef)
        del unrolled_model, unrolled
        hvp = self._hessian_vector_product_in_place(dtheta, weights, hidden_train, x_train, y_train)
        self.model.alphas.grad = (dalpha - eta * coef * hvp).detach()
        return hidden_next

    def _hessian_vector_product_in_place(self, vector, weights, hidden, x, y) -> torch.Tensor:
        alphas = self.model.arch_parameters()[0]
        radius = self._radius(vector)
        with torch.no_grad():
            originals = [w.detach().clone() for w in weights]
        grads = []
        for step in (radius, -2 * radius):
            with torch.no_grad():
                for w, v in zip(weights, vector):
                    w.add_(step * v)
            loss, _ = self._loss(None, hidden, x, y)
            grads.append(torch.autograd.grad(loss, alphas)[0])
        with torch.no_grad():
            for w, original in zip(weights, originals):
                w.copy_(original)  # exactly: w + Rv - 2Rv + Rv would drift by rounding
        return (grads[0] - grads[1]) / (2 * radius)

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The Adam state of the alphas."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])

"""Architecture updates: the DARTS architect, first order and second order (unrolled).

The architect trains a search model's architecture parameters (``model.arch_parameters()``)
with Adam (or plain SGD) on the validation loss, while the engine trains ``model.weights()`` on
the training loss. In a one-level search (SNAS, ``search.one_level``) there is no validation
loss: the training batch's one backward pass gives the alphas their gradient too, and
:meth:`Architect.step_on_gradients` steps them (``engine.loop.weight_step``).

It relies only on ``arch_parameters()``, ``weights()``, ``forward``, ``named_parameters()``
and ``named_buffers()``, so it serves every primitive set, every weighting scheme and any
search model with that interface.

Second order (DARTS' "unrolled" gradient, Liu et al. 2019, eq. 7-8): with the virtual weight
step ``w' = w - eta * d``, where ``d`` is the step the weight optimizer would take,

    grad_alpha = dL_val(w', a)/da - eta * d2L_train(w, a)/(da dw) . v,   v = dL_val(w', a)/dw'

and the Hessian-vector product is a central finite difference along ``v``:
``(dL_train(w + r v)/da - dL_train(w - r v)/da) / (2 r)`` with ``r = 0.01 / ||v||``.

The network is never copied: every pass is ``torch.func.functional_call`` on a dict of
tensors (``w'``, ``w +- r v``), so the model's weights are never written; after a step they
are bit-identical and only the alphas (and the Adam state) have changed. ``copy_network=True``
does it the original's way instead (a new network holding ``w'`` every step, the Hessian
passes on the model's own weights shifted in place): the same gradients, slower; it is the
yardstick of benchmarks/search_step.py's reference path.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import gin
import torch
from torch import nn
from torch.func import functional_call

from sharpdarts.core import validate
from sharpdarts.engine.context import average_over_processes

Tensors = list[torch.Tensor]


def _logits(out):
    """Model outputs may be ``logits`` or ``(logits, aux)``; the loss uses the logits."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> Tensors:
    """d loss / d inputs, with zeros (not None) for inputs the loss does not use, averaged
    over the processes of a distributed search.

    Every gradient the architect takes is of a mean loss over a batch; with equal shards, the
    mean of the processes' gradients is the gradient over their union. Averaging each one where
    it is taken (the training gradient of the virtual step, the validation gradients at ``w'``,
    both Hessian passes) makes ``w'``, ``v`` and the step the same on every process, and equal
    to one process's step on the whole batch, in both orders.
    """
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return average_over_processes(
        [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    )


@gin.configurable(denylist=["model"])
@validate.params(
    order=validate.Choice("1 or 2", choices=(1, 2)),
    lr=validate.LEARNING_RATE,
    weight_decay=validate.NON_NEGATIVE,
    grad_clip=validate.NON_NEGATIVE.or_none(),
    optimizer=validate.Choice("'adam' or 'sgd'", choices=("adam", "sgd")),
)
class Architect:
    """Updates a search model's architecture parameters with Adam (or plain SGD).

    Args:
        model: a search model with ``arch_parameters()`` and ``weights()``.
        order: 1 (first order: the validation gradient at the current weights, the paper's
            default) or 2 (the unrolled gradient through one virtual weight step).
        lr: the alphas' learning rate (3e-4 in DARTS, sharpDARTS and SNAS).
        betas: Adam betas ((0.5, 0.999)); unused by SGD.
        weight_decay: L2 weight decay on the alphas (1e-3; SNAS's single-GPU search: 0).
        criterion: loss of ``(logits, targets)``; ``nn.CrossEntropyLoss()`` when None.
        hvp_epsilon: the finite-difference radius of the Hessian-vector product is
            ``hvp_epsilon / ||v||`` (0.01 in DARTS).
        update_buffers: whether the step's forward passes update the model's buffers
            (BatchNorm running statistics). False (the default): every pass runs on a scratch
            copy of the buffers, so a step changes nothing in the model but the alphas. In
            train mode BatchNorm normalises by batch statistics either way, so gradients do
            not depend on this choice; only the running statistics (used in eval mode) do.
            True: the passes that the original code runs on the model itself update its
            buffers as there: the validation pass (first order); the training pass at ``w``
            and the passes at ``w + r v`` and ``w - r v`` (second order). The virtual
            validation pass at ``w'`` (run on a throwaway copy in the original) never does.
        copy_network: second order the original's way, for benchmarks and tests: a deep copy
            of the network per step holds ``w'``, and the passes at ``w +- r v`` shift the
            model's weights in place (restored exactly afterwards). Same result, slower.
        extra_loss: a term ``extra_loss(model)`` of the alphas added to every validation loss
            (``engine.arch_losses``: FairDARTS' zero-one loss, DrNAS' KL, ...); None: none.
        grad_clip: clip the norm of the alphas' gradient (all tensors together) before the
            step (P-DARTS: 5, its ``--grad_clip``; SNAS: 10); None: no clipping (DARTS).
        optimizer: 'adam' (DARTS) or 'sgd': plain SGD, no momentum, as SNAS's single-GPU
            search (``SNAS/train_search.py``: ``torch.optim.SGD(arch_parameters, lr)``).

    The model's train/eval mode is left as the caller set it (the search loop keeps it in
    train mode, as the original does). A model without architecture parameters (RSPS's
    supernet, which draws its cells at random) gets an architect that steps nothing: ``step``
    returns None and changes nothing, and its state is empty.
    """

    def __init__(
        self,
        model: nn.Module,
        order: int = 1,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        hvp_epsilon: float = 1e-2,
        update_buffers: bool = False,
        copy_network: bool = False,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        grad_clip: float | None = None,
        optimizer: str = "adam",
    ):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, not {order!r}")
        self.model = model
        self.order = order
        self.criterion = nn.CrossEntropyLoss() if criterion is None else criterion
        self.hvp_epsilon = hvp_epsilon
        self.update_buffers = update_buffers
        self.copy_network = copy_network
        self.extra_loss = extra_loss
        self.grad_clip = grad_clip
        arch = list(model.arch_parameters())
        if not arch:  # RSPS: no alphas, nothing to step
            self.optimizer = None
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(arch, lr, weight_decay=weight_decay)
        else:
            self.optimizer = torch.optim.Adam(
                arch, lr, betas=tuple(betas), weight_decay=weight_decay
            )

    # -- public API ---------------------------------------------------------------------------

    def step(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        valid_x: torch.Tensor,
        valid_y: torch.Tensor,
        eta: float,
        weight_optimizer: torch.optim.Optimizer | None = None,
    ) -> torch.Tensor | None:
        """One step of the alphas' optimizer (Adam by default; none when the model has no
        alphas).

        Args:
            train_x, train_y: a training batch (second order only).
            valid_x, valid_y: a validation batch.
            eta: the weight learning rate of the virtual step (second order only).
            weight_optimizer: the weights' optimizer. Second order reads from it each weight's
                momentum buffer, momentum, dampening, nesterov flag and weight decay, so the
                virtual step is the step that an SGD optimizer would take next (DARTS'
                ``w - eta * (momentum * buffer + dL/dw + wd * w)``); other optimizers
                contribute their weight decay only. None: a plain gradient step.

        Returns:
            The validation loss (at ``w`` for first order, at ``w'`` for second order) as a
            detached 0-dim tensor on the model's device: no host synchronisation here; call
            ``.item()`` when a number is needed.

        Only ``alpha.grad`` and the alphas change; the weights' ``.grad`` is not touched.
        """
        if self.optimizer is None:
            return None
        arch = list(self.model.arch_parameters())
        if self.order == 1:
            loss = self._loss(valid_x, valid_y, buffers=self._buffers(self.update_buffers))
            loss = self._with_extra(loss)
            grads = _grads(loss, arch)
        elif self.copy_network:
            loss, grads = self._unrolled_grads_by_copy(
                train_x, train_y, valid_x, valid_y, eta, weight_optimizer, arch
            )
        else:
            loss, grads = self._unrolled_grads(
                train_x, train_y, valid_x, valid_y, eta, weight_optimizer, arch
            )
        self.optimizer.zero_grad(set_to_none=True)
        for a, g in zip(arch, grads):
            a.grad = g.detach()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(arch, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def one_level_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """A one-level search's loss: the training batch's ``loss`` plus the extra term of
        the same forward pass (SNAS: ``error_loss + resource_loss``), whose one backward pass
        gives the weights and the alphas their gradients."""
        return self._with_extra(loss)

    def step_on_gradients(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """A one-level step of the alphas on the gradients their ``.grad`` already hold
        (from :meth:`one_level_loss`'s backward): unscaled by ``scaler`` (mixed precision),
        clipped to ``grad_clip``, one optimizer step (``scaler.step`` with a scaler)."""
        arch = [a for a in self.model.arch_parameters() if a.grad is not None]
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(arch, self.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    def state_dict(self) -> dict:
        """The optimizer's state (Adam's moments and step counts), for checkpoints."""
        return {"optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`'s output, so a resumed search takes the same steps."""
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    # -- internals ----------------------------------------------------------------------------

    def _named_weights(self) -> tuple[list[str], list[nn.Parameter]]:
        """Names and tensors of the trainable weights (``model.weights()``, by identity)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        pairs = [(names[id(p)], p) for p in self.model.weights() if p.requires_grad]
        return [n for n, _ in pairs], [p for _, p in pairs]

    def _buffers(self, real: bool) -> dict[str, torch.Tensor]:
        """The model's own buffers (passes update them) or a scratch copy (they do not)."""
        buffers = dict(self.model.named_buffers())
        if real:
            return buffers
        return {n: b.clone() for n, b in buffers.items()}

    def _with_extra(self, loss: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """The validation loss plus the extra term, if any. The term depends on the alphas
        only, so the weights' gradients (and the Hessian-vector product) do not change."""
        if self.extra_loss is None:
            return loss
        return loss + self.extra_loss(self.model if model is None else model)

    def _loss(self, x, y, buffers, params: dict[str, torch.Tensor] | None = None):
        """The loss of the model run with ``params`` in place of its weights and ``buffers``."""
        out = functional_call(self.model, {**(params or {}), **buffers}, (x,))
        return self.criterion(_logits(out), y)

    @staticmethod
    def _virtual_direction(
        weights: Sequence[nn.Parameter],
        grads: Tensors,
        weight_optimizer: torch.optim.Optimizer | None,
    ) -> Tensors:
        """The direction ``d`` of the weight optimizer's next step, ``w_next = w - eta * d``.

        For SGD this is exactly torch's update: ``d_p = g + wd * w``, then with momentum
        ``buf = momentum * buf + (1 - dampening) * d_p`` (``d_p`` itself on the first step),
        and with nesterov ``d_p + momentum * buf``. With dampening 0 and no nesterov it is
        DARTS' ``momentum * buf + g + wd * w``.
        """
        groups = {}
        if weight_optimizer is not None:
            for group in weight_optimizer.param_groups:
                for p in group["params"]:
                    groups[id(p)] = group
        directions = []
        for w, g in zip(weights, grads):
            group = groups.get(id(w))
            if group is None:
                directions.append(g)
                continue
            d = g
            wd = group.get("weight_decay", 0.0)
            if wd:
                d = d.add(w.detach(), alpha=wd)
            momentum = group.get("momentum", 0.0)
            if momentum:
                buf = weight_optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is None:
                    step = d
                else:
                    step = buf.mul(momentum).add_(d, alpha=1.0 - group.get("dampening", 0.0))
                d = d.add(step, alpha=momentum) if group.get("nesterov", False) else step
            directions.append(d)
        return directions

    def _unrolled_grads(
        self, train_x, train_y, valid_x, valid_y, eta, weight_optimizer, arch: list[nn.Parameter]
    ) -> tuple[torch.Tensor, Tensors]:
        """Validation loss at ``w'`` and the unrolled architecture gradient (module docstring)."""
        names, weights = self._named_weights()
        model_buffers = self._buffers(self.update_buffers)
        scratch = model_buffers if not self.update_buffers else self._buffers(False)

        # The virtual step w' = w - eta * d (plain tensors, leaves for the gradient v).
        train_loss = self._loss(train_x, train_y, model_buffers)
        grads = _grads(train_loss, weights)
        del train_loss
        with torch.no_grad():
            directions = self._virtual_direction(weights, grads, weight_optimizer)
            unrolled = [
                w.detach().sub(d, alpha=eta).requires_grad_(w.requires_grad)
                for w, d in zip(weights, directions)
            ]
        del grads, directions

        # The validation gradient at (w', alpha): d_alpha and v.
        valid_loss = self._loss(valid_x, valid_y, scratch, dict(zip(names, unrolled)))
        valid_loss = self._with_extra(valid_loss)
        valid_grads = _grads(valid_loss, arch + unrolled)
        d_alpha, v = valid_grads[: len(arch)], valid_grads[len(arch) :]
        del unrolled, valid_grads

        implicit = self._hessian_vector_product(
            names, weights, v, arch, train_x, train_y, model_buffers
        )
        grads = [g.sub(h, alpha=eta) for g, h in zip(d_alpha, implicit)]
        return valid_loss, grads

    def _unrolled_grads_by_copy(
        self, train_x, train_y, valid_x, valid_y, eta, weight_optimizer, arch
    ) -> tuple[torch.Tensor, Tensors]:
        """:meth:`_unrolled_grads` as the original computes it (``copy_network=True``)."""
        model = self.model
        names, weights = self._named_weights()
        saved_buffers = None if self.update_buffers else [b.clone() for b in model.buffers()]

        train_loss = self.criterion(_logits(model(train_x)), train_y)
        grads = _grads(train_loss, weights)
        del train_loss
        unrolled_model = copy.deepcopy(model)  # the original builds a new network here
        unrolled_params = dict(unrolled_model.named_parameters())
        unrolled = [unrolled_params[n] for n in names]
        with torch.no_grad():
            directions = self._virtual_direction(weights, grads, weight_optimizer)
            for u, w, d in zip(unrolled, weights, directions):
                u.copy_(w.sub(d, alpha=eta))
        del grads, directions

        valid_loss = self.criterion(_logits(unrolled_model(valid_x)), valid_y)
        valid_loss = self._with_extra(valid_loss, unrolled_model)
        valid_grads = _grads(valid_loss, list(unrolled_model.arch_parameters()) + unrolled)
        d_alpha, v = valid_grads[: len(arch)], valid_grads[len(arch) :]
        del unrolled_model, unrolled, unrolled_params, valid_grads

        r = self._hvp_radius(v)
        with torch.no_grad():
            originals = [w.detach().clone() for w in weights]
            for w, t in zip(weights, v):
                w.add_(t * r)
        grads_pos = _grads(self.criterion(_logits(model(train_x)), train_y), arch)
        with torch.no_grad():
            for w, t in zip(weights, v):
                w.sub_(t * (2 * r))
        grads_neg = _grads(self.criterion(_logits(model(train_x)), train_y), arch)
        with torch.no_grad():
            for w, original in zip(weights, originals):
                w.copy_(original)  # exactly: w + rv - 2rv + rv would drift by rounding
            if saved_buffers is not None:
                for b, saved in zip(model.buffers(), saved_buffers):
                    b.copy_(saved)
        grads = [
            g.sub((p - n) / (2 * r), alpha=eta) for g, p, n in zip(d_alpha, grads_pos, grads_neg)
        ]
        return valid_loss, grads

    @torch.no_grad()
    def _hvp_radius(self, v: Tensors) -> torch.Tensor:
        """The finite-difference radius ``hvp_epsilon / ||v||``, a tensor (no host sync)."""
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in v]))
        return self.hvp_epsilon / norm.clamp_min(torch.finfo(norm.dtype).tiny)

    def _hessian_vector_product(self, names, weights, v, arch, x, y, buffers) -> Tensors:
        """``d2L_train/(da dw) . v`` by central differences at ``w +- r v``.

        ``r`` stays a tensor (no host synchronisation). When ``v`` is zero the product is zero:
        ``r`` is then huge but finite and ``w +- r v == w``.
        """
        r = self._hvp_radius(v)

        def arch_grads(sign: float) -> Tensors:
            with torch.no_grad():
                shifted = [w.detach().add(t * (sign * r)) for w, t in zip(weights, v)]
            loss = self._loss(x, y, buffers, dict(zip(names, shifted)))
            return _grads(loss, arch)

        grads_pos = arch_grads(1.0)
        grads_neg = arch_grads(-1.0)
        return [(p - n) / (2 * r) for p, n in zip(grads_pos, grads_neg)]

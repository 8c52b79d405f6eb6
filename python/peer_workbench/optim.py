"""The engine's optimiser (engine/optimizer.c, engine/trainer.c): AdamW for the dense parameters
and a sparse Adam for the expert tables, the learning-rate schedule and gradient clipping.

- Dense: m = β1·m + (1-β1)·g, v = β2·v + (1-β2)·g², then
  p -= lr·(m̂ / (√v̂ + eps) + decay·p) with m̂ = m / (1-β1^t) and v̂ = v / (1-β2^t); decay 0
  on biases, norms, positions. Every dense parameter steps every time, with a zero gradient
  where it had none.
- Expert tables: the same Adam at their own constant expert_lr, without decay, on the rows
  chosen in the batch only; the other rows and their moments stay as they are. t is the global
  step count.
- Clipping: every gradient, dense and sparse, is scaled by clip / ‖g‖ when the global norm
  ‖g‖ exceeds clip.
- Schedule: linear warm-up to lr over `warmup` steps, then cosine decay to min_lr at `steps`.
"""

import math

import torch

from .checkpoint import contract_tensors
from .model import takes_weight_decay


def lr_at(settings, step):
    """The dense learning rate at a step (0-based), as trainer_lr_at computes it."""
    s = settings
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    decay_steps = s.steps - s.warmup
    if decay_steps <= 0:
        return s.lr
    progress = min((step - s.warmup) / decay_steps, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return s.min_lr + (s.lr - s.min_lr) * cosine


class PeerAdamW:
    """AdamW and sparse Adam over a PeerModel's trained tensors, keyed by contract name."""

    def __init__(self, model, settings):
        self.settings = settings
        state = dict(model.named_parameters())
        self.params = []  # (name, parameter, expert table, weight decay)
        for t in contract_tensors(model.cfg):
            if t.buffer:
                continue
            decay = settings.weight_decay if takes_weight_decay(t.name) else 0.0
            self.params.append((t.name, state[t.name], t.expert_table, decay))
        self.m = {name: torch.zeros_like(p) for name, p, _, _ in self.params}
        self.v = {name: torch.zeros_like(p) for name, p, _, _ in self.params}
        self.step_count = 0

    def load_moments(self, moments_m, moments_v, step_count):
        with torch.no_grad():
            for name, _, _, _ in self.params:
                self.m[name].copy_(moments_m[name])
                self.v[name].copy_(moments_v[name])
        self.step_count = step_count

    def zero_grad(self):
        for _, p, _, _ in self.params:
            p.grad = None

    def _coalesce(self):
        """Sums each sparse gradient's repeated rows once, for the norm and the step to share."""
        for _, p, table, _ in self.params:
            if table and p.grad is not None and not p.grad.is_coalesced():
                p.grad = p.grad.coalesce()

    def grad_norm(self):
        """√(Σ g²) over the dense gradients and the chosen rows of the sparse ones."""
        self._coalesce()
        norms = [(p.grad.values() if p.grad.is_sparse else p.grad).norm()
                 for _, p, _, _ in self.params if p.grad is not None]
        if not norms:
            return 0.0
        return math.sqrt(torch.stack(norms).double().square().sum().item())

    @torch.no_grad()
    def step(self, lr, expert_lr, grad_scale=1.0):
        s = self.settings
        self._coalesce()
        self.step_count += 1
        beta1, beta2, eps = s.beta1, s.beta2, s.eps
        inv1 = 1.0 / (1.0 - beta1 ** self.step_count)
        inv2 = 1.0 / (1.0 - beta2 ** self.step_count)
        for name, p, table, decay in self.params:
            m, v = self.m[name], self.v[name]
            if table:
                if p.grad is None:
                    continue
                rows, g = p.grad.indices()[0], p.grad.values()
                m_rows, v_rows = m.index_select(0, rows), v.index_select(0, rows)
            else:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                m_rows, v_rows = m, v
            if grad_scale != 1.0:
                g = g * grad_scale
            m_rows.mul_(beta1).add_(g, alpha=1.0 - beta1)
            v_rows.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            update = (m_rows * inv1).div_((v_rows * inv2).sqrt_().add_(eps))
            if table:
                m.index_copy_(0, rows, m_rows)
                v.index_copy_(0, rows, v_rows)
                p.index_add_(0, rows, update, alpha=-expert_lr)
            else:
                if decay:
                    update.add_(p, alpha=decay)
                p.sub_(update, alpha=lr)

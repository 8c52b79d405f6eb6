"""PEER's retrieval and its fused expert mixture, written so that memory stays bounded at a
million experts (PEER.md, "Known pitfalls"):

- product-key retrieval runs without autograd, a block of tokens at a time, so the (tokens, h, n)
  sub-key scores of one block exist at once and are never kept for the backward;
- the scores of the chosen experts are recomputed from the chosen sub-keys by a function whose
  backward reaches the query and only the chosen sub-key rows;
- the experts Σ g·σ(u·x)·v never keep the gathered (tokens, h·k, D) rows: the weighted sums
  of rows are embedding bags, the dots u·x gather a block of tokens' rows at a time, and the
  backward returns sparse (COO) gradients for the u and v tables, one row per expert chosen in
  the batch, for a sparse optimiser and cheap all-reduces.

The arithmetic is the engine's (engine/product-keys.c, engine/expert-kernel.c,
engine/peer-layer.c); the order of sums differs, and the engine's tanh is a rational
approximation within 5e-7 of the one used here, so results agree to float rounding.
"""

import math

import torch
import torch.nn.functional as F

# Floats of gathered rows held at once by one block of the fused functions (64 MiB).
BLOCK_FLOATS = 1 << 24
GELU_SCALE = math.sqrt(2.0 / math.pi)


def activation(z, kind):
    """σ of the expert: GELU in its tanh form, or ReLU."""
    return F.relu(z) if kind == "relu" else F.gelu(z, approximate="tanh")


def activation_derivative(z, kind):
    if kind == "relu":
        return (z > 0).to(z.dtype)
    t = torch.tanh(GELU_SCALE * (z + 0.044715 * z * z * z))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_SCALE * (1.0 + 3.0 * 0.044715 * z * z)


def _block_tokens(rows_per_token, width):
    return max(1, BLOCK_FLOATS // max(1, rows_per_token * width))


def _sparse_rows(indices, values, shape):
    """A COO gradient whose indices are sorted and unique (from torch.unique), marked so."""
    grad = torch.sparse_coo_tensor(indices.unsqueeze(0), values, shape)
    return grad._coalesced_(True) if hasattr(grad, "_coalesced_") else grad.coalesce()


class SelectedKeyScores(torch.autograd.Function):
    """scores (BT, h, k) = q[t, j] · table[group(j), index[t, j, s]] for one half of the query:
    q (BT, h, half), table (G, n, half) with G = h (a group per head) or 1 (shared),
    index (BT, h, k) sub-key rows."""

    @staticmethod
    def forward(ctx, q, table, index):
        BT, h, half = q.shape
        G, n, _ = table.shape
        rows = index + (torch.arange(h, device=q.device).view(1, h, 1) * n if G > 1 else 0)
        flat = table.reshape(G * n, half)
        out = q.new_empty(index.shape)
        step = _block_tokens(h * index.shape[2], half)
        for t0 in range(0, BT, step):
            chosen = flat[rows[t0:t0 + step]]  # (c, h, k, half)
            out[t0:t0 + step] = torch.einsum("chkd,chd->chk", chosen, q[t0:t0 + step])
        ctx.save_for_backward(q, table, rows)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, table, rows = ctx.saved_tensors
        BT, h, half = q.shape
        G, n, _ = table.shape
        flat = table.reshape(G * n, half)
        dq = torch.empty_like(q) if ctx.needs_input_grad[0] else None
        dtable = torch.zeros_like(flat) if ctx.needs_input_grad[1] else None
        step = _block_tokens(h * rows.shape[2], half)
        for t0 in range(0, BT, step):
            d = dout[t0:t0 + step]
            r = rows[t0:t0 + step]
            if dq is not None:
                dq[t0:t0 + step] = torch.einsum("chk,chkd->chd", d, flat[r])
            if dtable is not None:
                contrib = d.unsqueeze(-1) * q[t0:t0 + step].unsqueeze(2)  # (c, h, k, half)
                dtable.index_add_(0, r.reshape(-1), contrib.reshape(-1, half))
        return dq, dtable.view(G, n, half) if dtable is not None else None, None


@torch.no_grad()
def retrieve(query, keys, topk):
    """Exact product-key retrieval. query (BT, h, dk) normalised, keys (G, 2, n, dk/2).
    Returns the chosen sub-key rows of each half, best expert first: (rows_c, rows_c2), each
    (BT, h, k) int64, so that expert = rows_c·n + rows_c2."""
    BT, h, dk = query.shape
    G, _, n, half = keys.shape
    k = topk
    idx = [torch.empty(BT, h, k, dtype=torch.long, device=query.device) for _ in range(2)]
    val = [query.new_empty(BT, h, k) for _ in range(2)]
    step = _block_tokens(h, n)
    for side in range(2):
        table = keys[:, side]  # (G, n, half)
        if G == 1:
            table = table.expand(h, n, half)
        q = query[:, :, side * half:(side + 1) * half]
        for t0 in range(0, BT, step):
            scores = torch.einsum("chd,hnd->chn", q[t0:t0 + step], table)
            val[side][t0:t0 + step], idx[side][t0:t0 + step] = scores.topk(k, dim=-1)
    # The k best of the k² candidate sums; topk returns each half's values best first.
    candidates = (val[0].unsqueeze(-1) + val[1].unsqueeze(-2)).view(BT, h, k * k)
    best = candidates.topk(k, dim=-1).indices
    rows_c = idx[0].gather(-1, torch.div(best, k, rounding_mode="floor"))
    rows_c2 = idx[1].gather(-1, best % k)
    return rows_c, rows_c2


def expert_scores(query, keys, rows_c, rows_c2):
    """The scores q¹·c_a + q²·c'_b of the chosen experts, differentiable in query and keys."""
    half = keys.shape[-1]
    return (SelectedKeyScores.apply(query[..., :half], keys[:, 0], rows_c) +
            SelectedKeyScores.apply(query[..., half:], keys[:, 1], rows_c2))


def _rows_times(inverse, weights, dense, rows):
    """Σ over slots of weights[t, s] · dense[t] into row inverse[t, s]: (rows, D), as one sparse
    (rows × BT) by dense (BT × D) product, so no (BT, S, D) tensor is ever made."""
    BT, S = weights.shape
    tokens = torch.arange(BT, device=dense.device).repeat_interleave(S)
    matrix = torch.sparse_coo_tensor(torch.stack([inverse.reshape(-1), tokens]),
                                     weights.reshape(-1), (rows, BT))
    return torch.sparse.mm(matrix, dense)


def _dots(table, experts, vectors):
    """table[experts[t, s]] · vectors[t]: (BT, S), gathering a block of rows at a time."""
    BT, S = experts.shape
    out = vectors.new_empty(BT, S)
    step = _block_tokens(S, table.shape[1])
    for t0 in range(0, BT, step):
        rows = table[experts[t0:t0 + step]]  # (c, S, D)
        out[t0:t0 + step] = torch.bmm(rows, vectors[t0:t0 + step].unsqueeze(2)).squeeze(2)
    return out


class ExpertMixture(torch.autograd.Function):
    """out (BT, D) = Σ_s gate[t, s] · σ(u_e · x_t) · v_e over the S = h·k slots of each token,
    e = experts[t, s]; with down (u) None it is PKM's Σ_s gate · v_e. x (BT, D), experts (BT, S)
    int64, gates (BT, S), down and up (N, D). The weighted sums of rows are embedding bags; the
    dots u_e · x and v_e · dout gather a block of rows at a time; the tables' gradients are
    sparse products. The backward gives dense gradients for x and the gates and sparse ones
    for the tables."""

    @staticmethod
    def forward(ctx, x, experts, gates, down, up, kind):
        preact = _dots(down, experts, x) if down is not None else None
        weights = gates * activation(preact, kind) if down is not None else gates
        out = F.embedding_bag(experts, up, per_sample_weights=weights, mode="sum")
        ctx.kind = kind
        ctx.has_down = down is not None
        ctx.save_for_backward(x, experts, gates, preact, down, up)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, experts, gates, preact, down, up = ctx.saved_tensors
        N, D = up.shape
        dout = dout.contiguous()
        unique, inverse = torch.unique(experts, return_inverse=True)
        dy_v = _dots(up, experts, dout)  # v_e · dout_t, (BT, S)
        if not ctx.has_down:
            grad_up = _rows_times(inverse, gates, dout, unique.numel())
            return None, None, dy_v, None, _sparse_rows(unique, grad_up, (N, D)), None
        act = activation(preact, ctx.kind)
        dz = gates * dy_v * activation_derivative(preact, ctx.kind)
        dx = F.embedding_bag(experts, down, per_sample_weights=dz, mode="sum")
        grad_up = _rows_times(inverse, gates * act, dout, unique.numel())
        grad_down = _rows_times(inverse, dz, x, unique.numel())
        return (dx, None, act * dy_v, _sparse_rows(unique, grad_down, (N, D)),
                _sparse_rows(unique, grad_up, (N, D)), None)

"""The model of the checkpoint contract (ARCHITECTURE.md) as a torch.nn.Module.

A byte-level decoder-only transformer: x = tok_emb[byte] + pos_emb[t]; per block
x += attn(ln1(x)); x += ffn(ln2(x)); logits = ln_f(x) · tok_embᵀ; loss = mean next-byte
cross-entropy plus moe_aux_weight × the MoE blocks' load-balancing losses. Each block's ffn is
dense, peer, pkm or moe. The module's state_dict() keys are the contract's tensor names, so a
checkpoint maps one to one (checkpoint.py), and the arithmetic is the engine's (engine/model.c
and the files it calls), to float rounding.

In training, the PEER query batch-norm and the MoE auxiliary loss see the whole batch. Under
torch.distributed each process holds a part of it; set_sync_group() makes both sum their
statistics over the processes (with gradients through the sums), so that data-parallel training
computes what one process would compute on the whole batch.
"""

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .experts import ExpertMixture, expert_scores, retrieve

LAYER_NORM_EPS = 1e-5
BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.1
HEAD_NORM_EPS = 1e-5


def _all_reduce(tensor, group):
    """Σ over the processes of group, with the gradient summed back (torch.distributed.nn)."""
    import torch.distributed.nn.functional as dist_fn
    return dist_fn.all_reduce(tensor, group=group)


def _all_reduce_constant(tensor, group):
    import torch.distributed as dist
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, group=group)
    return tensor


class CausalSelfAttention(nn.Module):
    """Fused qkv projection (rows q, then k, then v), n_heads heads, scores scaled by
    1/√head_dim, causal softmax, output projection."""

    def __init__(self, d_model, n_heads, device=None):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, device=device)
        self.out = nn.Linear(d_model, d_model, device=device)

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_heads, hd).transpose(1, 2)
        k = k.view(B, T, self.n_heads, hd).transpose(1, 2)
        v = v.view(B, T, self.n_heads, hd).transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class DenseFFN(nn.Module):
    def __init__(self, d_model, d_ff, device=None):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, device=device)
        self.proj = nn.Linear(d_ff, d_model, device=device)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class QueryNorm(nn.Module):
    """The PEER query norm over the h·dk query features.

    batch: per feature, in training over all tokens of the batch (biased variance) while the
    running statistics move by momentum 0.1 towards the batch mean and the unbiased variance;
    in evaluation from the running statistics. layer: per head over dk, then an affine per
    feature. none: the query as it is. eps 1e-5 throughout."""

    def __init__(self, kind, heads, d_key, device=None):
        super().__init__()
        self.kind = kind
        self.heads = heads
        self.d_key = d_key
        self.sync_group = None
        features = heads * d_key
        if kind != "none":
            self.weight = nn.Parameter(torch.ones(features, device=device))
            self.bias = nn.Parameter(torch.zeros(features, device=device))
        if kind == "batch":
            self.register_buffer("running_mean", torch.zeros(features, device=device))
            self.register_buffer("running_var", torch.ones(features, device=device))

    def forward(self, x):
        if self.kind == "none":
            return x
        if self.kind == "layer":
            heads = x.view(-1, self.heads, self.d_key)
            mean = heads.mean(dim=-1, keepdim=True)
            var = (heads - mean).square().mean(dim=-1, keepdim=True)
            normed = (heads - mean) * torch.rsqrt(var + HEAD_NORM_EPS)
            return normed.view_as(x) * self.weight + self.bias
        if not self.training:
            return ((x - self.running_mean) * torch.rsqrt(self.running_var + BATCH_NORM_EPS) *
                    self.weight + self.bias)
        count = torch.tensor(float(x.shape[0]), device=x.device)
        total = x.sum(dim=0)
        if self.sync_group is not None:
            count = _all_reduce_constant(count, self.sync_group)
            total = _all_reduce(total, self.sync_group)
        mean = total / count
        centred = x - mean
        squares = centred.square().sum(dim=0)
        if self.sync_group is not None:
            squares = _all_reduce(squares, self.sync_group)
        var = squares / count
        with torch.no_grad():
            # the biased variance for a batch of one token, as the engine does
            unbiased = squares / torch.clamp(count - 1.0, min=1.0)
            m = BATCH_NORM_MOMENTUM
            self.running_mean.mul_(1.0 - m).add_(m * mean.detach())
            self.running_var.mul_(1.0 - m).add_(m * unbiased.detach())
        return centred * torch.rsqrt(var + BATCH_NORM_EPS) * self.weight + self.bias


class ProductKeyLayer(nn.Module):
    """PEER (values_only False): f(x) = Σ_heads Σ_chosen g·σ(u·x)·v over N = n² single-neuron
    experts chosen per head by exact product-key retrieval, g the softmax of the head's k scores.
    PKM (values_only True): the same retrieval and gates, f(x) = Σ g·value.

    The expert tables down (u) and up (v) (PKM: values) are plain (N, D) parameters whose
    gradients are sparse COO tensors holding the rows chosen in the batch."""

    def __init__(self, d_model, layer, device=None):
        super().__init__()
        self.values_only = layer.ffn == "pkm"
        self.heads, self.topk, self.d_key = layer.heads, layer.topk, layer.d_key
        self.n = layer.side
        self.activation = layer.activation
        HK = layer.heads * layer.d_key
        self.query = nn.Linear(d_model, HK, device=device)
        self.query_norm = QueryNorm(layer.query_norm, layer.heads, layer.d_key, device=device)
        self.keys = nn.Parameter(torch.empty(layer.key_groups, 2, self.n, layer.d_key // 2,
                                             device=device))
        N = layer.n_experts
        if self.values_only:
            self.values = nn.Parameter(torch.empty(N, d_model, device=device))
        else:
            self.down = nn.Parameter(torch.empty(N, d_model, device=device))
            self.up = nn.Parameter(torch.empty(N, d_model, device=device))
        self.last_experts = None  # (BT, h, k) of the last forward, for expert statistics
        self.last_gates = None    # (BT, h, k)

    @property
    def value_table(self):
        return self.values if self.values_only else self.up

    def expert_tables(self):
        return [self.values] if self.values_only else [self.down, self.up]

    def forward(self, x):
        B, T, D = x.shape
        h, k = self.heads, self.topk
        flat = x.reshape(B * T, D)
        query = self.query_norm(self.query(flat)).view(B * T, h, self.d_key)
        rows_c, rows_c2 = retrieve(query, self.keys, k)
        scores = expert_scores(query, self.keys, rows_c, rows_c2)  # (BT, h, k)
        gates = scores.softmax(dim=-1)
        experts = rows_c * self.n + rows_c2
        down = None if self.values_only else self.down
        out = ExpertMixture.apply(flat, experts.view(B * T, h * k), gates.reshape(B * T, h * k),
                                  down, self.value_table, self.activation)
        self.last_experts = experts.detach()
        self.last_gates = gates.detach()
        return out.view(B, T, D)


class ExpertLinear(nn.Module):
    """E linear maps side by side: weight (E, out, in), bias (E, out)."""

    def __init__(self, experts, d_in, d_out, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, d_out, d_in, device=device))
        self.bias = nn.Parameter(torch.zeros(experts, d_out, device=device))

    def forward(self, x, e):
        return x @ self.weight[e].t() + self.bias[e]


class MoELayer(nn.Module):
    """Token-choice top-k over E dense experts (fc → GELU → proj), gates the softmax over the
    chosen router logits, with the load-balancing loss aux = E · Σ_e f_e · P_e (f_e the share of
    the batch's slots routed to e, held constant; P_e the mean router probability of e)."""

    def __init__(self, d_model, layer, device=None):
        super().__init__()
        self.experts, self.topk = layer.n_experts, layer.topk
        self.router = nn.Linear(d_model, layer.n_experts, bias=False, device=device)
        self.fc = ExpertLinear(layer.n_experts, d_model, layer.d_ff, device=device)
        self.proj = ExpertLinear(layer.n_experts, layer.d_ff, d_model, device=device)
        self.sync_group = None
        self.aux_loss = None

    def forward(self, x):
        B, T, D = x.shape
        E, k = self.experts, self.topk
        flat = x.reshape(B * T, D)
        logits = self.router(flat)
        probs = logits.softmax(dim=-1)
        chosen_logits, chosen = logits.topk(k, dim=-1)
        gates = chosen_logits.softmax(dim=-1)
        slot_expert = chosen.reshape(-1)
        slot_token = torch.arange(B * T, device=x.device).repeat_interleave(k)
        slot_gate = gates.reshape(-1)
        out = torch.zeros_like(flat)
        for e in range(E):
            slots = (slot_expert == e).nonzero().squeeze(1)
            tokens = slot_token[slots]
            y = self.proj(F.gelu(self.fc(flat[tokens], e), approximate="tanh"), e)
            out = out.index_add(0, tokens, slot_gate[slots].unsqueeze(1) * y)

        counts = torch.bincount(slot_expert, minlength=E).to(flat.dtype)
        prob_sums = probs.sum(dim=0)
        tokens = torch.tensor(float(B * T), device=x.device)
        if self.training and self.sync_group is not None:
            counts = _all_reduce_constant(counts, self.sync_group)
            tokens = _all_reduce_constant(tokens, self.sync_group)
            prob_sums = _all_reduce(prob_sums, self.sync_group)
        self.aux_loss = E * ((counts / (tokens * k)) * (prob_sums / tokens)).sum()
        return out.view(B, T, D)


class Block(nn.Module):
    def __init__(self, cfg, layer, device=None):
        super().__init__()
        D = cfg.d_model
        self.ln1 = nn.LayerNorm(D, eps=LAYER_NORM_EPS, device=device)
        self.attn = CausalSelfAttention(D, cfg.n_heads, device=device)
        self.ln2 = nn.LayerNorm(D, eps=LAYER_NORM_EPS, device=device)
        if layer.ffn == "dense":
            self.ffn = DenseFFN(D, layer.d_ff, device=device)
        elif layer.ffn in ("peer", "pkm"):
            self.ffn = ProductKeyLayer(D, layer, device=device)
        else:
            self.ffn = MoELayer(D, layer, device=device)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class ModelOutput(NamedTuple):
    logits: torch.Tensor                   # (B, T, V)
    loss: Optional[torch.Tensor]           # cross-entropy + moe_aux_weight × Σ aux; with targets
    cross_entropy: Optional[torch.Tensor]  # mean next-byte cross-entropy, nats
    aux_loss: Optional[torch.Tensor]       # Σ of the MoE blocks' auxiliary losses


class PeerModel(nn.Module):
    """The contract's model for a ModelConfig. Fresh weights follow the engine's initialisation
    (GPT-2's N(0, 0.02), residual projections scaled by 1/√(2L), norms 1 and biases 0; PEER and
    PKM as engine/peer-layer.h says) in distribution, drawn from torch's generator."""

    def __init__(self, cfg: ModelConfig, device=None, seed=None, moe_aux_weight=0.01):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.moe_aux_weight = moe_aux_weight
        D = cfg.d_model
        self.tok_emb = nn.Parameter(torch.empty(cfg.vocab_size, D, device=device))
        self.pos_emb = nn.Parameter(torch.empty(cfg.context, D, device=device))
        self.blocks = nn.ModuleList(Block(cfg, layer, device=device) for layer in cfg.layers)
        self.ln_f = nn.LayerNorm(D, eps=LAYER_NORM_EPS, device=device)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed=None):
        generator = torch.Generator(device=self.tok_emb.device)
        generator.manual_seed(1337 if seed is None else seed)
        cfg = self.cfg

        def normal(p, std):
            p.normal_(0.0, std, generator=generator)

        std, residual_std = 0.02, 0.02 / math.sqrt(2.0 * cfg.n_layers)
        normal(self.tok_emb, std)
        normal(self.pos_emb, std)
        for block, layer in zip(self.blocks, cfg.layers):
            for norm in (block.ln1, block.ln2):
                norm.weight.fill_(1.0)
                norm.bias.zero_()
            normal(block.attn.qkv.weight, std)
            block.attn.qkv.bias.zero_()
            normal(block.attn.out.weight, residual_std)
            block.attn.out.bias.zero_()
            ffn = block.ffn
            if layer.ffn == "dense":
                normal(ffn.fc.weight, std)
                ffn.fc.bias.zero_()
                normal(ffn.proj.weight, residual_std)
                ffn.proj.bias.zero_()
            elif layer.ffn == "moe":
                normal(ffn.router.weight, std)
                normal(ffn.fc.weight, std)
                ffn.fc.bias.zero_()
                normal(ffn.proj.weight, residual_std)
                ffn.proj.bias.zero_()
            else:
                normal(ffn.query.weight, 1.0 / math.sqrt(cfg.d_model))
                ffn.query.bias.zero_()
                if layer.query_norm != "none":
                    ffn.query_norm.weight.fill_(1.0)
                    ffn.query_norm.bias.zero_()
                if layer.query_norm == "batch":
                    ffn.query_norm.running_mean.zero_()
                    ffn.query_norm.running_var.fill_(1.0)
                normal(ffn.keys, 1.0 / math.sqrt(layer.d_key // 2))
                if not ffn.values_only:
                    normal(ffn.down, 1.0 / math.sqrt(cfg.d_model))
                normal(ffn.value_table, 1.0 / math.sqrt(layer.heads * layer.topk))
        self.ln_f.weight.fill_(1.0)
        self.ln_f.bias.zero_()

    def set_sync_group(self, group):
        """Sum the batch statistics of training over the processes of group (None: this
        process's batch alone)."""
        for module in self.modules():
            if isinstance(module, (QueryNorm, MoELayer)):
                module.sync_group = group

    def expert_tables(self):
        """The (N, D) tables with sparse gradients, with their contract names."""
        return [(name, p) for name, p in self.named_parameters() if is_expert_table(name)]

    def forward(self, tokens, targets=None):
        B, T = tokens.shape
        if T > self.cfg.context:
            raise ValueError(f"{T} tokens per sequence exceed the model's context of "
                             f"{self.cfg.context}")
        x = F.embedding(tokens, self.tok_emb) + self.pos_emb[:T]
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.tok_emb.t()
        if targets is None:
            return ModelOutput(logits, None, None, None)
        ce = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        aux = logits.new_zeros(())
        for block in self.blocks:
            if isinstance(block.ffn, MoELayer):
                aux = aux + block.ffn.aux_loss
        return ModelOutput(logits, ce + self.moe_aux_weight * aux, ce, aux)


def is_expert_table(name):
    """PEER's u and v and PKM's values: sparse gradients, sparse Adam, no weight decay."""
    return name.endswith((".ffn.down", ".ffn.up", ".ffn.values"))


def takes_weight_decay(name):
    """The engine's rule: no decay on biases, norms, positions or expert tables."""
    if is_expert_table(name) or name == "pos_emb" or name.endswith(".bias"):
        return False
    return not (".ln1." in name or ".ln2." in name or name.startswith("ln_f.") or
                ".query_norm." in name)


def forward_flops_per_token(cfg, T):
    """Floating-point operations of one token's forward at context T, as the engine counts them
    (peer_model_forward_flops_per_token): two per multiply-add, with retrieval."""
    D, V = float(cfg.d_model), float(cfg.vocab_size)
    flops = 2.0 * D * V
    for layer in cfg.layers:
        flops += 2.0 * (3.0 * D * D + D * D) + 2.0 * 2.0 * D * (T + 1) / 2.0
        if layer.ffn == "dense":
            flops += 2.0 * 2.0 * D * layer.d_ff
        elif layer.ffn == "moe":
            flops += 2.0 * D * layer.n_experts + layer.topk * 2.0 * 2.0 * D * layer.d_ff
        else:
            h, dk, k, n = float(layer.heads), float(layer.d_key), float(layer.topk), layer.side
            flops += 2.0 * (h * D * dk + h * n * dk + 2.0 * h * k * D) + h * k * k
            if layer.ffn == "pkm":
                flops -= 2.0 * h * k * D
    return flops

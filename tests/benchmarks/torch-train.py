#!/usr/bin/python3
"""The same training run as bench-train, in plain PyTorch: the reference the C engine is measured
against.

The model is the contract's (ARCHITECTURE.md, PEER.md) written the way one would write it in
idiomatic eager PyTorch, nanoGPT-style: byte embedding plus learned positions, pre-LN GPT-2 blocks
with causal attention, tied unembedding, and per block either a dense FFN or a PEER layer (query
Linear -> BatchNorm1d over the h*dk features -> product-key retrieval with topk on each half,
k*k candidates and a final topk -> gather of u and v rows from nn.Embedding(N, D, sparse=True)
-> GELU(tanh) -> softmax gates -> weighted sum). AdamW trains the dense parameters and SparseAdam
the expert tables; warm-up then cosine decay; gradient clipping; batches of random windows of the
corpus. Nothing is hand-optimised and nothing is deliberately slow.

Usage: torch-train.py CORPUS RUN.json [--steps 30] [--warmup 3] [--threads 2]
Prints tokens/s, time a step and peak RSS, as text and as one RESULT line of JSON.
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        hd = D // self.n_heads
        q = q.view(B, T, self.n_heads, hd).transpose(1, 2)
        k = k.view(B, T, self.n_heads, hd).transpose(1, 2)
        v = v.view(B, T, self.n_heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        return self.out(y)


class DenseFFN(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class PEER(nn.Module):
    def __init__(self, d_model, n_experts, heads, topk, d_key):
        super().__init__()
        self.n = math.isqrt(n_experts)
        assert self.n * self.n == n_experts
        self.heads, self.topk, self.d_key = heads, topk, d_key
        self.query = nn.Linear(d_model, heads * d_key)
        self.query_norm = nn.BatchNorm1d(heads * d_key)
        # (h, 2, n, dk/2): [j, 0] are head j's sub-keys C, [j, 1] its C'
        self.keys = nn.Parameter(torch.randn(heads, 2, self.n, d_key // 2) / math.sqrt(d_key / 2))
        self.down = nn.Embedding(n_experts, d_model, sparse=True)
        self.up = nn.Embedding(n_experts, d_model, sparse=True)
        nn.init.normal_(self.query.weight, std=1.0 / math.sqrt(d_model))
        nn.init.zeros_(self.query.bias)
        nn.init.normal_(self.down.weight, std=1.0 / math.sqrt(d_model))
        nn.init.normal_(self.up.weight, std=1.0 / math.sqrt(heads * topk))

    def forward(self, x):
        B, T, D = x.shape
        h, k, n = self.heads, self.topk, self.n
        x = x.reshape(B * T, D)
        q = self.query_norm(self.query(x)).view(B * T, h, 2, self.d_key // 2)
        sim = torch.einsum("thsd,hsnd->thsn", q, self.keys)  # (BT, h, 2, n)
        s1, i1 = sim[:, :, 0].topk(k, dim=-1)  # (BT, h, k)
        s2, i2 = sim[:, :, 1].topk(k, dim=-1)
        cand_scores = (s1.unsqueeze(-1) + s2.unsqueeze(-2)).view(B * T, h, k * k)
        cand_index = (i1.unsqueeze(-1) * n + i2.unsqueeze(-2)).view(B * T, h, k * k)
        scores, best = cand_scores.topk(k, dim=-1)  # (BT, h, k)
        index = cand_index.gather(-1, best)
        gates = scores.softmax(dim=-1)
        u = self.down(index)  # (BT, h, k, D)
        v = self.up(index)
        act = F.gelu(torch.einsum("thkd,td->thk", u, x), approximate="tanh")
        y = torch.einsum("thk,thkd->td", act * gates, v)
        return y.view(B, T, D)


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        D = cfg["d_model"]
        self.ln1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention(D, cfg["n_heads"])
        self.ln2 = nn.LayerNorm(D)
        if layer["ffn"] == "dense":
            self.ffn = DenseFFN(D, layer["d_ff"])
        elif layer["ffn"] == "peer":
            if (layer["shared_keys"] or layer["query_norm"] != "batch"
                    or layer["activation"] != "gelu"):
                raise SystemExit("torch-train: only per-head keys, batch norm and gelu are "
                                 "written here")
            self.ffn = PEER(D, layer["n_experts"], layer["heads"], layer["topk"], layer["d_key"])
        else:
            raise SystemExit(f"torch-train: ffn {layer['ffn']!r} is not written here")

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class ByteGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        V, T, D, L = cfg["vocab_size"], cfg["context"], cfg["d_model"], cfg["n_layers"]
        self.tok_emb = nn.Embedding(V, D)
        self.pos_emb = nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block(cfg, cfg["layers"][l]) for l in range(L))
        self.ln_f = nn.LayerNorm(D)
        residual_std = 0.02 / math.sqrt(2 * L)
        for name, p in self.named_parameters():
            if name.endswith(("attn.qkv.weight", "ffn.fc.weight")) or name.endswith("_emb.weight"):
                nn.init.normal_(p, std=0.02)
            elif name.endswith(("attn.out.weight", "ffn.proj.weight")):
                nn.init.normal_(p, std=residual_std)
            elif name.endswith(("attn.qkv.bias", "attn.out.bias", "fc.bias", "proj.bias")):
                nn.init.zeros_(p)

    def forward(self, tokens, targets):
        B, T = tokens.shape
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.tok_emb.weight.t()
        return F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))


def make_optimizers(model, tr):
    decay, no_decay, sparse = [], [], []
    for name, p in model.named_parameters():
        if name.endswith(("ffn.down.weight", "ffn.up.weight")):
            sparse.append(p)
        elif p.dim() >= 2 and name != "pos_emb.weight":
            decay.append(p)
        else:
            no_decay.append(p)
    betas = (tr["beta1"], tr["beta2"])
    opts = [torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=tr["lr"], betas=betas, eps=tr["eps"])]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=tr["expert_lr"], betas=betas, eps=tr["eps"]))
    return opts, decay + no_decay, sparse


def lr_at(tr, step):
    if step < tr["warmup"]:
        return tr["lr"] * (step + 1) / tr["warmup"]
    progress = min(1.0, (step - tr["warmup"]) / max(1, tr["steps"] - tr["warmup"]))
    return tr["min_lr"] + (tr["lr"] - tr["min_lr"]) * 0.5 * (1.0 + math.cos(math.pi * progress))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("run")
    ap.add_argument("--steps", type=int, default=30, help="steps, warm-up included")
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the timings")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    with open(args.run) as f:
        run = json.load(f)
    cfg = run["model"]
    tr = {"batch_size": 16, "seq_len": cfg["context"], "steps": 2000, "lr": 3e-3, "min_lr": 3e-4,
          "warmup": 100, "expert_lr": 1e-3, "grad_clip": 1.0, "beta1": 0.9, "beta2": 0.95,
          "eps": 1e-8, "weight_decay": 0.1}
    tr.update({k: v for k, v in run.get("training", {}).items() if k in tr})
    B, T = tr["batch_size"], tr["seq_len"]
    name = os.path.splitext(os.path.basename(args.run))[0]

    with open(args.corpus, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    train = data[: int(len(data) * 0.9)].long()

    t0 = time.perf_counter()
    model = ByteGPT(cfg)
    opts, dense_params, sparse_params = make_optimizers(model, tr)
    init_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_experts = sum(p.numel() for p in sparse_params)
    print(f"{name} (PyTorch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"{n_params / 1e6:.3f} M parameters ({n_experts / 1e6:.3f} M in expert tables), "
          f"B {B} x T {T}; initialisation {init_s:.2f} s", flush=True)

    offsets = torch.arange(T + 1)
    times, cpu_times, losses = [], [], []
    model.train()
    for step in range(args.steps):
        c0 = time.process_time()
        s0 = time.perf_counter()
        starts = torch.randint(0, len(train) - T - 1, (B,))
        window = train[starts.unsqueeze(1) + offsets]
        tokens, targets = window[:, :-1], window[:, 1:]
        loss = model(tokens, targets)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        # The global norm over the dense gradients and the touched rows of the tables; a sparse
        # gradient holds a row once per selection until it is coalesced.
        for p in sparse_params:
            p.grad = p.grad.coalesce()
        sq = sum(p.grad.pow(2).sum() for p in dense_params if p.grad is not None)
        sq = sq + sum(p.grad.values().pow(2).sum() for p in sparse_params)
        norm = sq.sqrt()
        if norm > tr["grad_clip"]:
            scale = tr["grad_clip"] / norm
            for p in dense_params + sparse_params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        for group in opts[0].param_groups:
            group["lr"] = lr_at(tr, step)
        for opt in opts:
            opt.step()
        losses.append(loss.item())
        dt = time.perf_counter() - s0
        if step >= args.warmup:
            times.append(dt)
            cpu_times.append(time.process_time() - c0)

    total = sum(times)
    tokens_per_s = B * T * len(times) / total
    median = statistics.median(times)
    cpu_per_wall = sum(cpu_times) / total
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"  {len(times)} steps timed after {args.warmup} warm-up: {1e3 * median:.1f} ms a step "
          f"(median; min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f}), "
          f"{cpu_per_wall:.2f} CPU s per wall s")
    print(f"  {tokens_per_s:.0f} tokens/s; loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
          f"peak RSS {peak_mib:.0f} MiB")
    print("RESULT " + json.dumps({
        "config": name, "impl": "pytorch", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch": B, "seq": T, "params": n_params,
        "expert_params": n_experts, "init_s": round(init_s, 3), "steps": args.steps,
        "timed_steps": len(times), "step_ms_median": round(1e3 * median, 2),
        "step_ms_min": round(1e3 * min(times), 2), "step_ms_max": round(1e3 * max(times), 2),
        "cpu_per_wall": round(cpu_per_wall, 3),
        "tokens_per_s": round(tokens_per_s), "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4), "rss_peak_mib": round(peak_mib)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())

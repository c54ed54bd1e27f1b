"""End-to-end suite: whole training steps (zero_grad, forward, loss, backward, optimizer
step) with fusekit against the torch equivalent, and the optimizer step's share of each,
on synthetic data (nothing is downloaded):
- gpt: a small GPT (token + position embeddings, pre-LayerNorm blocks of causal
  self-attention and a GELU MLP, tied LM head; torch.nn layers on both sides) trained
  with fusekit's AdamW vs torch's best eager AdamW (fused, else foreach);
- convnet: Nielsen's convnet (5x5 convolution to 20 maps, ReLU, 2x2 max-pool, fully
  connected 2880-100-10) with fusekit's ConvReLUMaxPool2d + SGD vs torch's
  Conv2d -> ReLU -> MaxPool2d + SGD (best eager). Both sides start from the same weights."""
from __future__ import annotations

import time

import torch
from torch import nn

import fusekit.nn as fnn
import fusekit.optim as fo

from .candidates import Candidate, measure
from .stats import compare, summarize
from .peers import torch_best

GPT_SIZES = {"default": dict(vocab=4096, ctx=64, d=256, layers=4, heads=4, batch=8),   # 4.2M params
             "small": dict(vocab=2048, ctx=32, d=128, layers=2, heads=4, batch=8),    # 0.66M params
             "tiny": dict(vocab=64, ctx=8, d=32, layers=1, heads=2, batch=2)}
CONVNET_BATCH = {"default": 64, "small": 64, "tiny": 4}
GPT_OPT = ("AdamW", dict(lr=3e-4, weight_decay=0.1))
CONVNET_OPT = ("SGD", dict(lr=0.03, momentum=0.9, weight_decay=5e-4))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).transpose(1, 3).unbind(2)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, ctx: int, d: int, layers: int, heads: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        return self.ln_f(self.blocks(x)) @ self.wte.weight.t()  # LM head tied to the embedding


class ConvNet(nn.Module):
    """Nielsen's convnet; fused=True puts conv + ReLU + pool in fusekit's ConvReLUMaxPool2d,
    whose parameters are named as a Conv2d's, so both variants share one state_dict."""

    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused
        self.conv = fnn.ConvReLUMaxPool2d(1, 20, 5, pool_size=2) if fused else nn.Conv2d(1, 20, 5)
        self.fc = nn.Sequential(nn.Linear(20 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10))

    def forward(self, x):
        h = self.conv(x) if self.fused else nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(h.flatten(1))


def models(workload: str, size: str, device: str):
    """(fusekit model, torch model, fusekit optimizer class name, kwargs, inputs, targets)."""
    torch.manual_seed(0)
    if workload == "gpt":
        s = GPT_SIZES[size]
        ours = GPT(s["vocab"], s["ctx"], s["d"], s["layers"], s["heads"]).to(device)
        theirs = GPT(s["vocab"], s["ctx"], s["d"], s["layers"], s["heads"]).to(device)
        x = torch.randint(0, s["vocab"], (s["batch"], s["ctx"]), device=device)
        y = torch.randint(0, s["vocab"], (s["batch"], s["ctx"]), device=device)
        name, kw = GPT_OPT
    else:
        ours, theirs = ConvNet(fused=True).to(device), ConvNet(fused=False).to(device)
        x = torch.randn(CONVNET_BATCH[size], 1, 28, 28, device=device)
        y = torch.randint(0, 10, (CONVNET_BATCH[size],), device=device)
        name, kw = CONVNET_OPT
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs, name, kw, x, y


def trainer(label, peer, model, opt, x, y, device):
    """A candidate running one training step; it times its optimizer step on the side."""
    opt_s = []

    def step():
        opt.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        opt_s.append(time.perf_counter() - t0)

    def finish(entry):
        opt = summarize(opt_s[-entry["n"]:])  # the timed steps, not the warm-up ones
        return dict(opt=opt, opt_ms=opt["median"], opt_share=opt["median"] / entry["median"])

    return Candidate(label, step, finish=finish, extra=dict(peer=peer))


def run(workload: str, device: str, cfg, size: str = "default") -> dict:
    ours, theirs, name, kw, x, y = models(workload, size, device)
    ref, impl = torch_best(name, list(theirs.parameters()), kw, device)
    cands = [trainer("fusekit", "fusekit", ours, getattr(fo, name)(ours.parameters(), **kw), x, y, device),
             trainer(f"torch ({name} {impl})", "torch", theirs, ref, x, y, device)]
    base = dict(suite="e2e", case=f"{workload} train step ({name})", workload=workload, device=device,
                params=sum(p.numel() for p in ours.parameters()), tensors=len(list(ours.parameters())),
                batch=x.shape[0])
    row = measure(base, cands, device, cfg.warmup, cfg.reps, cfg.budget_s)
    ours_opt = row["candidates"][0]["opt"]
    row["opt_comparisons"] = [dict(vs=c["name"], peer=c["peer"], **compare(ours_opt, c["opt"], row["others_cpu"]))
                              for c in row["candidates"][1:]]
    return row

"""Forward passes and hand-written backward cells for the grading tests, with their references.

The makemore forward and the solution lines are adapted from karpathy/nn-zero-to-hero,
lectures/makemore/makemore_part4_backprop.ipynb ("becoming a backprop ninja", Exercise 1),
on small seeded data made here (no download). The reference is torch.autograd in float64,
computed independently of the package, with per-use contributions of values used twice
(each use of a value reads its own alias, whose gradient is that use's contribution).
"""

from __future__ import annotations

import ast

import numpy as np
import torch
import torch.nn.functional as F

from einsum_magic.grade import Reference, forward_hints

FORWARD = """\
emb = C[Xb] # embed the characters into vectors
embcat = emb.view(emb.shape[0], -1) # concatenate the vectors
# Linear layer 1
hprebn = embcat @ W1 + b1 # hidden layer pre-activation
# BatchNorm layer
bnmeani = 1/n*hprebn.sum(0, keepdim=True)
bndiff = hprebn - bnmeani
bndiff2 = bndiff**2
bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True) # note: Bessel's correction (dividing by n-1, not n)
bnvar_inv = (bnvar + 1e-5)**-0.5
bnraw = bndiff * bnvar_inv
hpreact = bngain * bnraw + bnbias
# Non-linearity
h = torch.tanh(hpreact) # hidden layer
# Linear layer 2
logits = h @ W2 + b2 # output layer
# cross entropy loss (same as F.cross_entropy(logits, Yb))
logit_maxes = logits.max(1, keepdim=True).values
norm_logits = logits - logit_maxes # subtract max for numerical stability
counts = norm_logits.exp()
counts_sum = counts.sum(1, keepdims=True)
counts_sum_inv = counts_sum**-1 # if I use (1.0 / counts_sum) instead then I can't get backprop to be bit exact...
probs = counts * counts_sum_inv
logprobs = probs.log()
loss = -logprobs[range(n), Yb].mean()
"""

#: The lecture's Exercise 1 answer, line by line, as it writes them.
SOLUTION = """\
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
dprobs = (1.0 / probs) * dlogprobs
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
dcounts = counts_sum_inv * dprobs
dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
dcounts += torch.ones_like(counts) * dcounts_sum
dnorm_logits = counts * dcounts
dlogits = dnorm_logits.clone()
dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
dh = dlogits @ W2.T
dW2 = h.T @ dlogits
db2 = dlogits.sum(0)
dhpreact = (1.0 - h**2) * dh
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnraw = bngain * dhpreact
dbnbias = dhpreact.sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv
dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar
dbndiff += (2*bndiff) * dbndiff2
dhprebn = dbndiff.clone()
dbnmeani = (-dbndiff).sum(0)
dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)
dembcat = dhprebn @ W1.T
dW1 = embcat.T @ dhprebn
db1 = dhprebn.sum(0)
demb = dembcat.view(emb.shape)
dC = torch.zeros_like(C)
for k in range(Xb.shape[0]):
  for j in range(Xb.shape[1]):
    ix = Xb[k,j]
    dC[ix] += demb[k,j]
"""

#: The 26 values Exercise 1 differentiates (25 gradients and the table C), backward order.
GRADIENTS = ("logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits",
             "logit_maxes", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw",
             "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn", "embcat", "W1",
             "b1", "emb", "C")

#: A tanh MLP with a mean-squared loss (classic course layer), and its backward.
MLP = """\
pre = x @ W + b
act = torch.tanh(pre)
out = act @ V
loss = ((out - y)**2).mean()
"""
MLP_SOLUTION = """\
dout = 2 * (out - y) / out.numel()
dV = act.T @ dout
dact = dout @ V.T
dpre = (1 - act**2) * dact
dW = x.T @ dpre
db = dpre.sum(0)
dx = dpre @ W.T
"""
MLP_GRADIENTS = ("out", "V", "act", "pre", "W", "b", "x")

#: One attention head (scores, softmax, values): the class-hour chain, 6 gradients.
ATTENTION = """\
q = x @ Wq
k = x @ Wk
v = x @ Wv
scores = (q @ k.T) * scale
att = torch.softmax(scores, dim=-1)
y = att @ v
loss = (y * target).sum()
"""
ATTENTION_SOLUTION = """\
dy = target
datt = dy @ v.T
dv = att.T @ dy
dscores = att * (datt - (att * datt).sum(-1, keepdim=True))
dq = (dscores * scale) @ k
dk = (dscores * scale).T @ q
dWq = x.T @ dq
dWk = x.T @ dk
dWv = x.T @ dv
dx = dq @ Wq.T + dk @ Wk.T + dv @ Wv.T
"""
ATTENTION_GRADIENTS = ("y", "att", "v", "scores", "q", "k", "Wq", "Wk", "Wv", "x")


#: The class-hour chain of the notebooks: one attention head, its 6 gradients.
HEAD = """\
scores = q @ k.T * scale
att = torch.softmax(scores, dim=-1)
y = att @ v
loss = 0.5 * (y**2).sum()
"""
HEAD_SOLUTION = """\
dy = y
datt = dy @ v.T
dv = att.T @ dy
dscores = att * (datt - (att * datt).sum(-1, keepdim=True))
dq = dscores @ k * scale
dk = dscores.T @ q * scale
"""
HEAD_GRADIENTS = ("y", "att", "v", "scores", "q", "k")


def head(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    data = {"torch": torch, "q": torch.randn(5, 4, generator=g),
            "k": torch.randn(5, 4, generator=g), "v": torch.randn(5, 4, generator=g),
            "scale": 4 ** -0.5}
    data = {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in data.items()}
    return run_forward(HEAD, data), reference(HEAD, data, HEAD_GRADIENTS)


def makemore_data(seed: int = 0, dtype=torch.float32) -> dict:
    """The forward's inputs, made here: 27 characters, a context of 3, a batch of 32."""
    g = torch.Generator().manual_seed(seed)
    vocab_size, block_size, n_embd, n_hidden, n = 27, 3, 10, 64, 32
    ns = {"torch": torch, "F": F, "n": n,
          "Xb": torch.randint(0, vocab_size, (n, block_size), generator=g),
          "Yb": torch.randint(0, vocab_size, (n,), generator=g),
          "C": torch.randn((vocab_size, n_embd), generator=g),
          "W1": torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / 30 ** 0.5,
          "b1": torch.randn(n_hidden, generator=g) * 0.1,
          "W2": torch.randn((n_hidden, vocab_size), generator=g) * 0.1,
          "b2": torch.randn(vocab_size, generator=g) * 0.1,
          "bngain": torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0,
          "bnbias": torch.randn((1, n_hidden), generator=g) * 0.1}
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in ns.items()}


def mlp_data(seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    ns = {"torch": torch, "x": torch.randn(8, 5, generator=g),
          "W": torch.randn(5, 6, generator=g) * 0.5, "b": torch.randn(6, generator=g) * 0.1,
          "V": torch.randn(6, 3, generator=g), "y": torch.randn(8, 3, generator=g)}
    return {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in ns.items()}


def attention_data(seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    T, d = 6, 4
    ns = {"torch": torch, "x": torch.randn(T, d, generator=g),
          "Wq": torch.randn(d, d, generator=g) * 0.5, "Wk": torch.randn(d, d, generator=g) * 0.5,
          "Wv": torch.randn(d, d, generator=g) * 0.5, "target": torch.randn(T, d, generator=g),
          "scale": d ** -0.5}
    return {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in ns.items()}


def _versioned(tree: ast.Module) -> ast.Module:
    """``att = …`` bound twice → ``att``, ``att_1`` (the design's versioning of rebinding),
    in place, line numbers kept."""
    seen: dict[str, int] = {}
    current: dict[str, str] = {}
    for stmt in tree.body:
        for node in ast.walk(stmt.value if isinstance(stmt, ast.Assign) else stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                node.id = current.get(node.id, node.id)
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if isinstance(t, ast.Name):
                    k = seen.get(t.id, -1) + 1
                    seen[t.id] = k
                    current[t.id] = t.id if k == 0 else f"{t.id}_{k}"
                    t.id = current[t.id]
    return tree


def run_forward(source: str, ns: dict) -> dict:
    """The forward run as the learner's notebook runs it (no autograd), in ``ns``'s dtype."""
    out = dict(ns)
    exec(source, out)
    return out


def reference(source: str, ns: dict, names) -> Reference:
    """torch.autograd (float64) gradients of every name, with each use's contribution.

    Each statement reads its own alias (``v.view_as(v)``) of every value it uses; an alias's
    ``.grad`` is that use's contribution, and their sum the value's gradient.
    """
    tree = _versioned(ast.parse(source))
    env = {k: (v.detach().double().requires_grad_() if torch.is_tensor(v)
               and v.is_floating_point() else v) for k, v in ns.items()}
    uses: dict[str, list] = {}
    for stmt in tree.body:
        local = dict(env)
        read = sorted({n.id for n in ast.walk(stmt)
                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})
        for name in read:
            v = env.get(name)
            if torch.is_tensor(v) and v.requires_grad:
                alias = v.view_as(v)
                alias.retain_grad()
                local[name] = alias
                uses.setdefault(name, []).append((stmt.lineno, alias))
        before = set(local)
        exec(compile(ast.Module([stmt], []), "<forward>", "exec"), local)
        for k in set(local) - before | {t.id for t in ast.walk(stmt)
                                         if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}:
            env[k] = local[k]
    env["loss"].backward()
    grads, contributions = {}, {}
    for name in names:
        parts = [(line, a.grad.numpy().copy()) for line, a in uses.get(name, [])]
        grads[name] = sum(p for _, p in parts)
        if len(parts) > 1:
            contributions[name] = tuple(parts)
    shapes = {k: tuple(env[k].shape) for k in names}
    return Reference(grads, shapes, contributions, hints=forward_hints(source, shapes))


def makemore(seed: int = 0, dtype=torch.float32):
    """(namespace after the forward, reference) for the makemore part 4 forward."""
    ns = run_forward(FORWARD, makemore_data(seed, dtype))
    return ns, reference(FORWARD, makemore_data(seed, dtype), GRADIENTS)


def mlp(seed: int = 0, dtype=torch.float32):
    ns = run_forward(MLP, mlp_data(seed, dtype))
    return ns, reference(MLP, mlp_data(seed, dtype), MLP_GRADIENTS)


def attention(seed: int = 0, dtype=torch.float32):
    ns = run_forward(ATTENTION, attention_data(seed, dtype))
    return ns, reference(ATTENTION, attention_data(seed, dtype), ATTENTION_GRADIENTS)


def learner(source: str, ns: dict) -> dict:
    """The namespace after the learner's backward cell ran on the forward's namespace."""
    out = dict(ns)
    exec(source, out)
    return out


def numpy_like(ns: dict) -> dict:
    """The namespace with every tensor as a NumPy array (a NumPy learner)."""
    return {k: (v.detach().numpy() if torch.is_tensor(v) else v) for k, v in ns.items()}


__all__ = ["FORWARD", "SOLUTION", "GRADIENTS", "MLP", "MLP_SOLUTION", "ATTENTION",
           "ATTENTION_SOLUTION", "makemore", "mlp", "attention", "learner", "reference",
           "run_forward", "numpy_like", "np"]

"""makemore part 4, "becoming a backprop ninja": the forward cell, its data, and torch.autograd's answer.

Source: karpathy/nn-zero-to-hero, lectures/makemore/makemore_part4_backprop.ipynb. The
forward cell is :data:`FORWARD`, verbatim (with the lecture's own ``retain_grad`` /
``loss.backward()`` tail); :data:`GRADIENTS` lists the gradients its Exercise 1 asks for,
in the lecture's order (its ``cmp`` lines: 26 of them, ``dlogprobs`` … ``dC``).

:func:`data` makes what the cells before it make, without names.txt: parameters shaped and
scaled as the lecture initialises them (vocab 27, block_size 3, n_embd 10, n_hidden 64,
batch 32), and a minibatch ``Xb, Yb`` of random characters, all from one seeded
``torch.Generator`` (float64 by default). :func:`autograd_reference` runs the forward cell on
fresh copies of the parameters and returns torch.autograd's gradient of every name.

Self-contained (torch only), so a notebook can use it as it is:

>>> ns = data(0)
>>> exec(FORWARD, ns)
>>> tuple(ns["loss"].shape), ns["logprobs"].shape
((), torch.Size([32, 27]))
>>> ref = autograd_reference(data(0))
>>> list(ref) == list(GRADIENTS), tuple(ref["dC"].shape)
(True, (27, 10))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FORWARD", "GRADIENTS", "SEED", "data", "autograd_reference", "of"]

#: The lecture's generator seed.
SEED = 2147483647

#: The forward cell of the lecture, verbatim.
FORWARD = '''\
# forward pass, "chunkated" into smaller steps that are possible to backward one at a time

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

# PyTorch backward pass
for p in parameters:
  p.grad = None
for t in [logprobs, probs, counts, counts_sum, counts_sum_inv, # afaik there is no cleaner way
          norm_logits, logit_maxes, logits, h, hpreact, bnraw,
         bnvar_inv, bnvar, bndiff2, bndiff, hprebn, bnmeani,
         embcat, emb]:
  t.retain_grad()
loss.backward()
loss
'''

#: Exercise 1's gradients, in the lecture's order (its ``cmp`` calls).
GRADIENTS = ("dlogprobs", "dprobs", "dcounts_sum_inv", "dcounts_sum", "dcounts", "dnorm_logits",
             "dlogit_maxes", "dlogits", "dh", "dW2", "db2", "dhpreact", "dbngain", "dbnbias",
             "dbnraw", "dbnvar_inv", "dbnvar", "dbndiff2", "dbndiff", "dbnmeani", "dhprebn",
             "dembcat", "dW1", "db1", "demb", "dC")

PARAMETERS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")


def of(gradient: str) -> str:
    """The value a gradient of :data:`GRADIENTS` is of: ``of('dW1') == 'W1'``."""
    return gradient[1:]


def data(seed: int = SEED, dtype: torch.dtype = torch.float64) -> dict:
    """The namespace the forward cell runs in: torch, F, n, the parameters, Xb and Yb.

    Shapes and init scales are the lecture's; the minibatch is random characters drawn
    after the parameters from the same generator (the lecture samples rows of its data set
    there). Every parameter has ``requires_grad`` set, as the lecture does.
    """
    vocab_size, block_size, n_embd, n_hidden, batch_size = 27, 3, 10, 64, 32
    g = torch.Generator().manual_seed(seed)
    C = torch.randn((vocab_size, n_embd), generator=g, dtype=dtype)
    # Layer 1
    W1 = (torch.randn((n_embd * block_size, n_hidden), generator=g, dtype=dtype)
          * (5 / 3) / ((n_embd * block_size) ** 0.5))
    b1 = torch.randn(n_hidden, generator=g, dtype=dtype) * 0.1
    # Layer 2
    W2 = torch.randn((n_hidden, vocab_size), generator=g, dtype=dtype) * 0.1
    b2 = torch.randn(vocab_size, generator=g, dtype=dtype) * 0.1
    # BatchNorm parameters
    bngain = torch.randn((1, n_hidden), generator=g, dtype=dtype) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g, dtype=dtype) * 0.1
    parameters = [C, W1, b1, W2, b2, bngain, bnbias]
    for p in parameters:
        p.requires_grad = True
    Xb = torch.randint(0, vocab_size, (batch_size, block_size), generator=g)
    Yb = torch.randint(0, vocab_size, (batch_size,), generator=g)
    return {"torch": torch, "F": F, "vocab_size": vocab_size, "block_size": block_size,
            "n_embd": n_embd, "n_hidden": n_hidden, "batch_size": batch_size, "n": batch_size,
            "C": C, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "bngain": bngain, "bnbias": bnbias,
            "parameters": parameters, "Xb": Xb, "Yb": Yb}


def autograd_reference(ns: dict) -> dict:
    """torch.autograd's gradients of :data:`GRADIENTS` for the parameters and batch in ``ns``.

    Runs :data:`FORWARD` (which retains the intermediates' gradients and calls
    ``loss.backward()``, as the lecture does) in a namespace of its own, on detached copies of
    the parameters, so neither ``ns`` nor its tensors' ``.grad`` change. Returns
    ``{'dlogprobs': tensor, …, 'dC': tensor}`` in the lecture's order.
    """
    own = {"torch": torch, "F": F, "n": ns["n"], "Xb": ns["Xb"].clone(), "Yb": ns["Yb"].clone()}
    for name in PARAMETERS:
        own[name] = ns[name].detach().clone().requires_grad_(True)
    own["parameters"] = [own[name] for name in PARAMETERS]
    exec(compile(FORWARD, "<makemore forward>", "exec"), own)
    return {d: own[of(d)].grad.detach().clone() for d in GRADIENTS}

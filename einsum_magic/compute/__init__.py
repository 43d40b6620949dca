"""What a derivation costs and how it runs elsewhere: contraction plans, FLOPs, exported source.

:mod:`.cost` (opt_einsum's paths, the joint backward plan, the learner's tally) and
:mod:`.export` (the backward as NumPy, ``jax.custom_vjp`` or ``torch.autograd.Function`` source).
"""

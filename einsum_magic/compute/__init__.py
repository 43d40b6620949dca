"""What a derivation costs and how it runs elsewhere: contraction plans, FLOPs, exported source.

:mod:`.plan` (the joint forward and backward along opt_einsum's path), :mod:`.cost` (opt_einsum's
report, the learner's tally) and :mod:`.export` (the backward as NumPy, ``jax.custom_vjp`` or
``torch.autograd.Function`` source, and :func:`~.export.export` / :func:`~.export.compiled`, the
implementations of ``Derivation.export`` / ``.compile``; the one writer every export, of one einsum
or of a cell's backward, is laid out by) and :mod:`.spell` (NumPy backward lines in JAX's and
PyTorch's spelling, by syntax tree).
"""

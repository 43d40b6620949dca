"""One recorder per framework: each observes the run and writes a :class:`~einsum_magic.chain.record.Recording`.

* :mod:`~einsum_magic.chain.recorders.torch`: ``torch.overrides.TorchFunctionMode``.
* :mod:`~einsum_magic.chain.recorders.numpy`: boxed arrays (``__array_ufunc__``,
  ``__array_function__``, routed methods), unboxed after the run.

A recorder never changes what the user's code computes: it calls the function it
observed exactly as the code called it and returns its result; anything failing in the
recorder's own bookkeeping stops the record (one line saying why), never the cell.
"""

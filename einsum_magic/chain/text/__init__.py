"""The cell backward read from the cell's text: the design being retired (issue 18).

It reads a whitelist of NumPy steps from the cell's top-level source and re-evaluates
them. It stays reachable only through :func:`einsum_magic.chain.result.numpy_text_backward`
until the NumPy recorder (:mod:`einsum_magic.chain.record`) replaces it; nothing new is
built on it.
"""

"""Real-world cells under %%einsum_grad in a real kernel (nbclient): what ran is what is shown.

Each case is a cell adapted from public code (its source is named; shapes made small,
data seeded). One kernel runs every case twice, after a ``%reset``: plainly, with an
independent recorder of every outermost einsum call (tests/realworld_kernel.py), then
under ``%%einsum_grad --no-check -o``. For every case:

* the cell that runs plainly also runs under the magic (no error output);
* every call site that executed is displayed, in execution order, and every shape
  shown is the shape of the array that call received;
* every value the cell made (and the array attributes of its objects) equals the
  plain run's, and its printed output and ``Out`` are the same.

The check (JAX) is covered by tests/test_run.py; here ``--no-check`` keeps one kernel
and ~350 cells fast. Cases that need einops or torch are skipped where they are missing.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

HERE = pathlib.Path(__file__).resolve().parents[1]      # tests/, where realworld_kernel.py lives
HAVE = {m: importlib.util.find_spec(m) is not None for m in ("torch", "einops", "jax",
                                                           "opt_einsum")}

CASES = [
    # -- attention layers ----------------------------------------------------------------
    ("karpathy/minGPT mingpt/model.py CausalSelfAttention, scores as an einsum", "torch", """
        import torch, math
        B, T, C, nh = 2, 5, 8, 2
        x = torch.randn(B, T, C)
        q, k, v = x.view(B, T, nh, C // nh).transpose(1, 2), x.view(B, T, nh, C // nh).transpose(1, 2), x.view(B, T, nh, C // nh).transpose(1, 2)
        att = torch.einsum('bhtd,bhsd->bhts', q, k) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float('-inf')).softmax(-1)
        y = torch.einsum('bhts,bhsd->bhtd', att, v)
        """),
    ("ramsey (ramsey-devs) DotProductAttention.__call__, jnp.einsum in a method", "jax", """
        import jax, jax.numpy as jnp
        class DotProductAttention:
            def __call__(self, key, value, query):
                _, _, d_k = query.shape
                weights = jnp.einsum("bik,bjk->bij", query, key) / jnp.sqrt(d_k)
                weights = jax.nn.softmax(weights)
                return jnp.einsum("bik,bkj->bij", weights, value)
        k0 = jax.random.PRNGKey(0)
        key, value, query = (jax.random.normal(jax.random.fold_in(k0, i), (2, 4, 3)) for i in range(3))
        rep = DotProductAttention()(key, value, query)
        """),
    ("google/flax linen/attention.py dot_product_attention_weights, plain jax", "jax", """
        import jax, jax.numpy as jnp
        def dot_product_attention_weights(query, key):
            query = query / jnp.sqrt(query.shape[-1])
            attn_weights = jnp.einsum('...qhd,...khd->...hqk', query, key)
            return jax.nn.softmax(attn_weights, axis=-1)
        def dot_product_attention(query, key, value):
            w = dot_product_attention_weights(query, key)
            return jnp.einsum('...hqk,...khd->...qhd', w, value)
        q = jnp.ones((2, 5, 2, 4)); kv = jnp.arange(2 * 6 * 2 * 4.0).reshape(2, 6, 2, 4) / 100
        out = dot_product_attention(q, kv, kv)
        """),
    ("wrsturgeon/jax-attention attention(), jitted with a spaced pattern", "jax", """
        import jax, jax.numpy as jnp
        @jax.jit
        def attention(salience, values):
            return jnp.einsum("... h s s, ... h s d -> ... h s d", salience, values)
        out = attention(jnp.ones((3, 2, 4, 4)), jnp.ones((3, 2, 4, 5)))
        """),
    ("lucidrains/x-transformers style multi-head attention with einops", "einops torch", """
        import torch
        from einops import rearrange, einsum
        x = torch.randn(2, 6, 16)
        to_qkv = torch.nn.Linear(16, 48, bias=False)
        q, k, v = to_qkv(x).chunk(3, dim=-1)
        q, k, v = (rearrange(t, 'b n (h d) -> b h n d', h=4) for t in (q, k, v))
        sim = einsum(q, k, 'b h i d, b h j d -> b h i j') * 0.5
        out = einsum(sim.softmax(dim=-1), v, 'b h i j, b h j d -> b h i d')
        out = rearrange(out, 'b h n d -> b n (h d)')
        """),
    ("haiku MultiHeadAttention style: projections with einsum, plain numpy", "", """
        import numpy as np
        rng = np.random.default_rng(0)
        def linear_proj(x, W):
            return np.einsum('...d,dhk->...hk', x, W)
        x = rng.normal(size=(2, 5, 8))
        Wq, Wk = rng.normal(size=(8, 2, 4)), rng.normal(size=(8, 2, 4))
        logits = np.einsum('...thd,...Thd->...htT', linear_proj(x, Wq), linear_proj(x, Wk))
        """),
    ("an attention head as a class (tutorial pattern), numpy", "", """
        import numpy as np
        class Head:
            def __init__(self, d_model, d_head, seed=0):
                rng = np.random.default_rng(seed)
                self.Wq = rng.normal(size=(d_model, d_head))
                self.Wk = rng.normal(size=(d_model, d_head))
            def scores(self, x):
                q = np.einsum('td,dh->th', x, self.Wq)
                k = np.einsum('td,dh->th', x, self.Wk)
                return np.einsum('th,sh->ts', q, k)
        head = Head(6, 3)
        S = head.scores(np.ones((4, 6)))
        """),
    ("equinox-style MLP layer in plain jax: a pytree-free dataclass", "jax", """
        import dataclasses, jax, jax.numpy as jnp
        @dataclasses.dataclass
        class Linear:
            weight: jnp.ndarray
            bias: jnp.ndarray
            def __call__(self, x):
                return jnp.einsum('oi,i->o', self.weight, x) + self.bias
        layer = Linear(jnp.ones((3, 4)), jnp.zeros(3))
        y = jax.vmap(layer)(jnp.arange(8.0).reshape(2, 4))
        """),
    ("mixture-of-experts dispatch (GShard / mesh-tensorflow pattern), numpy", "", """
        import numpy as np
        rng = np.random.default_rng(1)
        tokens = rng.normal(size=(6, 4))
        dispatch = np.eye(3)[[0, 1, 2, 0, 1, 2]][:, :, None] * np.ones((6, 3, 2))
        expert_inputs = np.einsum('sec,sm->ecm', dispatch, tokens)
        combined = np.einsum('sec,ecm->sm', dispatch, expert_inputs)
        """),
    ("bilinear layer / torch.nn.Bilinear written as einsum", "torch", """
        import torch
        x1, x2, W = torch.randn(3, 4), torch.randn(3, 5), torch.randn(2, 4, 5)
        y = torch.einsum('bi,oij,bj->bo', x1, W, x2)
        """),
    # -- quantum chemistry ---------------------------------------------------------------
    ("pyscf examples/cc/01-density_matrix.py: h1 in the MO basis and energies", "", """
        import numpy
        nao = 4
        rng = numpy.random.default_rng(2)
        mo_coeff = rng.normal(size=(nao, nao)); hcore = rng.normal(size=(nao, nao))
        dm1 = numpy.eye(nao); eri = rng.normal(size=(nao,) * 4); dm2 = rng.normal(size=(nao,) * 4)
        h1 = numpy.einsum('pi,pq,qj->ij', mo_coeff.conj(), hcore, mo_coeff)
        E = numpy.einsum('pq,qp', h1, dm1)
        E += numpy.einsum('pqrs,pqrs', eri, dm2) * .5
        dm1_ao = numpy.einsum('pi,ij,qj->pq', mo_coeff, dm1, mo_coeff.conj())
        """),
    ("the Gram / density-matrix function of issue 10 (RHF density from occupied MOs)", "", """
        import numpy as np
        def density(C):
            return np.einsum('pi,qi->pq', C, C)
        C_occ = np.arange(12.0).reshape(4, 3)
        P = 2 * density(C_occ)
        """),
    ("pyscf nao/m_comp_dm.py comp_dm: occupation-weighted density, imported einsum", "", """
        import numpy as np
        def comp_dm(ksnac2x, ksn2occ):
            from numpy import einsum
            ksnac2x_occ = einsum('ksnac,ksn->ksnac', ksnac2x, ksn2occ)
            return einsum('ksnac,ksnbc->ksabc', ksnac2x_occ, ksnac2x)
        dm = comp_dm(np.ones((1, 1, 3, 4, 1)), np.ones((1, 1, 3)))
        """),
    ("chrinide/pyaim gamma/example/delta.py: delocalisation index, numpy alias", "", """
        import numpy
        aom1 = numpy.eye(3) * 0.5; aom2 = numpy.full((3, 3), 0.1)
        delta = 4 * numpy.einsum('ij,ji->', aom1, aom2)
        """),
    ("Hartree-Fock J and K builds (psi4numpy tutorials pattern)", "", """
        import numpy as np
        n = 3
        I = np.arange(n ** 4, dtype=float).reshape(n, n, n, n) / 100
        D = np.eye(n)
        J = np.einsum('pqrs,rs->pq', I, D, optimize=True)
        K = np.einsum('prqs,rs->pq', I, D, optimize=True)
        F = 2 * J - K
        """),
    ("MP2 energy denominator contraction (psi4numpy MP2 pattern)", "", """
        import numpy as np
        o, v = 2, 3
        MO = np.ones((o, v, o, v)) * 0.1
        eps_o, eps_v = -np.arange(1.0, o + 1), np.arange(1.0, v + 1)
        e_denom = 1 / (eps_o[:, None, None, None] - eps_v[None, :, None, None]
                       + eps_o[None, None, :, None] - eps_v[None, None, None, :])
        MP2_E = np.einsum('iajb,iajb,iajb->', MO, MO, e_denom) - np.einsum('iajb,ibja,iajb->', MO, MO, e_denom)
        """),
    ("AO to MO integral transformation, four quarter steps in a loop", "", """
        import numpy as np
        n = 3
        C = np.eye(n) + 0.1
        g = np.ones((n, n, n, n))
        for eq in ('pqrs,pi->iqrs', 'iqrs,qj->ijrs', 'ijrs,rk->ijks', 'ijks,sl->ijkl'):
            g = np.einsum(eq, g, C)
        """),
    # -- tensor networks -----------------------------------------------------------------
    ("alvarorga/improved-guide mps contract(): <psi|phi> sweep in a loop", "", """
        import numpy as np
        class Mps:
            def __init__(self, L, d, D):
                self.L, self.A = L, [np.ones((1 if i == 0 else D, d, 1 if i == L - 1 else D)) / 2
                                     for i in range(L)]
        def contract(psi, phi):
            L = np.eye(1)
            for i in range(psi.L):
                L = np.einsum('im,mjk->ijk', L, psi.A[i])
                L = np.einsum('mni,mnj->ij', L, phi.A[i])
            return L[0, 0]
        psi = Mps(4, 2, 3)
        overlap = contract(psi, psi)
        """),
    ("Moke2001/TensorNetwork mps_tensor_product: dispatch on ranks", "", """
        import numpy as np
        def mps_tensor_product(A, B):
            if A.ndim == 2 and B.ndim == 2:
                return np.einsum('ij,jk->ik', A, B)
            elif A.ndim == 3 and B.ndim == 3:
                return np.einsum('ijk,klp->ijlp', A, B)
            return np.einsum('ijk,kl->ijl', A, B)
        r1 = mps_tensor_product(np.ones((2, 3)), np.ones((3, 4)))
        r2 = mps_tensor_product(np.ones((2, 3, 4)), np.ones((4, 2, 5)))
        """),
    ("PEPS transfer matrix (peps/TorNcon style) with a trace in torch", "torch", """
        import torch
        T = torch.ones(1, 3, 2, 2, 2, 2)
        def transferM(T, ny):
            return torch.einsum('ijkj->ik', T[0, ny])
        TM = transferM(T, 0)
        for ny in range(1, T.size(1)):
            TM = TM @ transferM(T, ny)
        Tnorm = TM.trace()
        """),
    ("opt_einsum README: a contraction path over many tensors", "opt_einsum", """
        import numpy as np
        import opt_einsum as oe
        N = 4
        C = np.random.rand(N, N)
        I = np.random.rand(N, N, N, N)
        r = oe.contract('pi,qj,ijkl,rk,sl->pqrs', C, C, I, C, C)
        """),
    ("opt_einsum contract_expression reused (opt_einsum docs)", "opt_einsum", """
        import numpy as np
        from opt_einsum import contract
        a, b = np.ones((3, 4)), np.ones((4, 5))
        results = [contract('ij,jk->ik', a * s, b) for s in range(3)]
        """),
    ("DMRG effective Hamiltonian on two sites (TeNPy-like numpy)", "", """
        import numpy as np
        D, d, w = 3, 2, 4
        L = np.ones((D, w, D)); R = np.ones((D, w, D)); W = np.ones((w, w, d, d)) / 10
        theta = np.ones((D, d, d, D))
        H_theta = np.einsum('awb,bijc,wvik,vxjl,dxc->akld', L, theta, W, W, R)
        """),
    ("quimb-style expectation value <psi|O|psi> with a complex state", "", """
        import numpy as np
        psi = (np.arange(4) + 1j * np.arange(4)[::-1]) / 4
        O = np.diag([1.0, -1.0, 1.0, -1.0])
        expval = np.einsum('i,ij,j->', psi.conj(), O, psi)
        """),
    # -- numerical and ML code -----------------------------------------------------------
    ("numpy docs einsum examples: trace, diagonal, transpose, outer", "", """
        import numpy as np
        a = np.arange(25).reshape(5, 5); b = np.arange(5); c = np.arange(6).reshape(2, 3)
        tr = np.einsum('ii', a)
        dg = np.einsum('ii->i', a)
        ct = np.einsum('ji', c)
        outer = np.einsum('i,j', np.arange(2) + 1, b)
        inner = np.einsum(b, [0], b, [0])
        """),
    ("numpy docs: the interleaved (sublist) form with an ellipsis", "", """
        import numpy as np
        a = np.arange(60.).reshape(3, 4, 5); b = np.arange(24.).reshape(4, 3, 2)
        t = np.einsum(a, [0, 1, 2], b, [1, 0, 3], [2, 3])
        e = np.einsum(np.ones((2, 3, 4)), [Ellipsis, 1], np.ones(4), [1], [Ellipsis])
        """),
    ("batched Mahalanobis distances (scikit-learn GaussianMixture pattern)", "", """
        import numpy as np
        X = np.random.randn(5, 2); means = np.zeros((3, 2)); prec = np.stack([np.eye(2)] * 3)
        diff = X[None, :, :] - means[:, None, :]
        maha = np.einsum('kni,kij,knj->kn', diff, prec, diff)
        """),
    ("covariance of centred data (statsmodels-style)", "", """
        import numpy as np
        data = np.arange(12.0).reshape(4, 3)
        Xc = data - data.mean(0)
        cov = np.einsum('ni,nj->ij', Xc, Xc) / (len(data) - 1)
        """),
    ("rotation of point clouds by batched matrices (pytorch3d-style)", "torch", """
        import torch
        R = torch.eye(3).expand(4, 3, 3).clone(); pts = torch.randn(4, 10, 3)
        rotated = torch.einsum('bij,bnj->bni', R, pts)
        """),
    ("the gradient of a linear layer written out by hand (CS231n-style numpy)", "", """
        import numpy as np
        x = np.random.randn(4, 3); W = np.random.randn(3, 2); dout = np.ones((4, 2))
        out = np.einsum('nd,dm->nm', x, W)
        dW = np.einsum('nd,nm->dm', x, dout)
        dx = np.einsum('nm,dm->nd', dout, W)
        """),
    ("a gradient-descent loop (the einsum in a loop of 5 steps)", "", """
        import numpy as np
        X = np.arange(8.0).reshape(4, 2) / 8; y = np.array([0., 1., 1., 0.]); w = np.zeros(2)
        for step in range(5):
            pred = np.einsum('nd,d->n', X, w)
            w -= 0.1 * np.einsum('nd,n->d', X, pred - y)
        """),
    ("a jax training step: grad of an einsum loss, jitted", "jax", """
        import jax, jax.numpy as jnp
        def loss(W, x, y):
            return jnp.mean((jnp.einsum('bi,io->bo', x, W) - y) ** 2)
        step = jax.jit(lambda W, x, y: W - 0.1 * jax.grad(loss)(W, x, y))
        W1 = step(jnp.ones((3, 2)), jnp.ones((4, 3)), jnp.zeros((4, 2)))
        """),
    ("jax.vmap over a per-example bilinear form (JAX docs pattern)", "jax", """
        import jax, jax.numpy as jnp
        def bilinear(u, M, v):
            return jnp.einsum('i,ij,j->', u, M, v)
        batched = jax.vmap(bilinear, in_axes=(0, None, 0))
        vals = batched(jnp.ones((5, 3)), jnp.eye(3), jnp.arange(20.0).reshape(5, 4)[:, :3])
        """),
    ("jax.lax.scan over an RNN cell written with einsum", "jax", """
        import jax, jax.numpy as jnp
        Wh, Wx = jnp.eye(3) * 0.5, jnp.ones((2, 3))
        def cell(h, x):
            h = jnp.tanh(jnp.einsum('h,hk->k', h, Wh) + jnp.einsum('i,ik->k', x, Wx))
            return h, h
        h_last, hs = jax.lax.scan(cell, jnp.zeros(3), jnp.ones((4, 2)))
        """),
    ("torch.nn.Module with einsum in forward (a low-rank adapter, LoRA-style)", "torch", """
        import torch
        class LoRA(torch.nn.Module):
            def __init__(self, d, r):
                super().__init__()
                self.A = torch.nn.Parameter(torch.randn(d, r) * 0.1)
                self.B = torch.nn.Parameter(torch.zeros(r, d))
            def forward(self, x):
                return x + torch.einsum('bd,dr,re->be', x, self.A, self.B)
        model = LoRA(6, 2)
        with torch.no_grad():
            y = model(torch.randn(3, 6))
        """),
    ("torch autograd through einsum (backward of a Frobenius loss)", "torch", """
        import torch
        A = torch.randn(3, 4, requires_grad=True)
        loss = torch.einsum('ij,ij->', A, A)
        loss.backward()
        gA = A.grad.clone()
        """),
    ("einops docs: einsum over named axes, reduce afterwards", "einops", """
        import numpy as np
        import einops
        images = np.ones((2, 3, 4, 5))
        gram = einops.einsum(images, images, 'b c h w, b d h w -> b c d')
        pooled = einops.reduce(images, 'b c h w -> b c', 'mean')
        """),
    ("einops with jax arrays (a tutorial patch embedding)", "einops jax", """
        import jax.numpy as jnp
        from einops import einsum, rearrange
        patches = rearrange(jnp.ones((1, 8, 8, 3)), 'b (h p1) (w p2) c -> b (h w) (p1 p2 c)', p1=4, p2=4)
        proj = einsum(patches, jnp.ones((48, 16)), 'b n p, p d -> b n d')
        """),
    ("an equation chosen at run time (a generic contraction helper)", "", """
        import numpy as np
        def contract(x, y, batched):
            eq = 'bij,bjk->bik' if batched else 'ij,jk->ik'
            return np.einsum(eq, x, y)
        r1 = contract(np.ones((2, 3)), np.ones((3, 4)), False)
        r2 = contract(np.ones((5, 2, 3)), np.ones((5, 3, 4)), True)
        """),
    ("operands unpacked with * and an f-string equation (a tensor-train helper)", "", """
        import numpy as np
        cores = [np.ones((2, 3)), np.ones((3, 4)), np.ones((4, 2))]
        letters = 'abcd'
        spec = ','.join(f'{letters[i]}{letters[i + 1]}' for i in range(3)) + f'->{letters[0]}{letters[3]}'
        full = np.einsum(spec, *cores)
        """),
    ("self.xp.einsum: array-API style backend object (cupy/numpy agnostic code)", "", """
        import numpy as np
        class Op:
            def __init__(self, xp):
                self.xp = xp
            def apply(self, M, v):
                return self.xp.einsum('ij,j->i', M, v)
        res = Op(np).apply(np.eye(3), np.arange(3.0))
        """),
    ("functools.partial of einsum renamed (a matmul shortcut)", "", """
        import functools
        import numpy as np
        mm = functools.partial(np.einsum, 'ij,jk->ik')
        prod = mm(np.ones((2, 2)), np.ones((2, 3)))
        """),
    ("a try/except fallback where the first equation fails (shape-generic code)", "", """
        import numpy as np
        x = np.ones((3, 4))
        try:
            s = np.einsum('bij->b', x)
        except ValueError:
            s = np.einsum('ij->i', x)
        """),
    ("top-level await in a notebook (an async data loader)", "", """
        import asyncio
        import numpy as np
        async def load():
            await asyncio.sleep(0)
            return np.ones((2, 3))
        batch = await load()
        feat = np.einsum('nd,d->n', batch, np.arange(3.0))
        print(feat)
        feat.sum()
        """),
    ("printing inside a loop (a training log)", "", """
        import numpy as np
        for epoch in range(2):
            z = np.einsum('i,i->', np.arange(3.0), np.full(3, epoch))
            print(f'epoch {epoch}: {z:.1f}')
        """),
    ("a function defined in the cell and called with the same array twice", "", """
        import numpy as np
        def frobenius(a, b):
            return np.einsum('ij,ij->', a, b)
        M = np.arange(6.0).reshape(2, 3)
        f2 = frobenius(M, M)
        fab = frobenius(M, M + 1)
        """),
]


def cell(code: str) -> str:
    return textwrap.dedent(code).strip("\n")


def notebook(cases):
    cells = []
    for _, _, code in cases:
        for source in (
            "%reset -f\nimport realworld_kernel as _rk\n_rk.prepare(get_ipython())\n"
            "_rk.truth_start()",
            cell(code),
            "_rk.truth_stop(get_ipython())",
            "%reset -f\nimport realworld_kernel as _rk\n_rk.prepare(get_ipython())",
            "%%einsum_grad --no-check -o _rk_res\n" + cell(code),
            "_rk.report(get_ipython(), '_rk_res')",
        ):
            cells.append(nbformat.v4.new_code_cell(source))
    cells.insert(0, nbformat.v4.new_code_cell("%load_ext einsum_magic\n"
                                              "%config EinsumGradMagics.view = 'text'"))
    return nbformat.v4.new_notebook(cells=cells)


def available(needs: str) -> bool:
    return all(HAVE[m] for m in needs.split())


RUNNABLE = [c for c in CASES if available(c[1])]


@pytest.fixture(scope="module")
def executed():
    nb = notebook(RUNNABLE)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return nb.cells[1:]


def outputs(c, kind: str):
    return [o for o in c.outputs if o.output_type == kind]


def stdout(c) -> str:
    return "".join(o.text for o in outputs(c, "stream") if o.name == "stdout")


def test_the_suite_is_large_and_varied():
    assert len(CASES) >= 40
    assert len({source for source, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("k", range(len(CASES)), ids=[c[0][:60] for c in CASES])
def test_what_ran_is_what_is_shown(executed, k):
    source, needs, _ = CASES[k]
    if not available(needs):
        pytest.skip(f"needs {needs}")
    index = RUNNABLE.index(CASES[k])
    _, plain, _, _, magic, report = executed[6 * index:6 * index + 6]
    assert outputs(plain, "error") == [], f"the case itself fails: {source}"
    errors = outputs(magic, "error")
    assert errors == [], "\n".join(e.ename + ": " + e.evalue for e in errors)
    result = json.loads(stdout(report).strip().splitlines()[-1])
    truth, shown = result["truth"], result["shown"]
    assert len(shown) == len(truth), (truth, shown)
    for (equation, shapes), (shown_eq, shown_shapes, where) in zip(truth, shown):
        assert shown_shapes == shapes, (where, equation)
        if equation is not None and shown_eq is not None:
            assert shown_eq == equation
    assert result["differ"] == [], f"values differ from the plain run: {result['differ']}"
    plain_out = stdout(plain)
    magic_out = "".join(line for line in stdout(magic).splitlines(keepends=True)
                        if not line.startswith("einsum_grad:"))
    assert magic_out == plain_out
    assert [o.data for o in outputs(magic, "execute_result")] == \
        [o.data for o in outputs(plain, "execute_result")]

"""The cell backward from the record of the run (torch), through a real IPython shell.

Every gradient is proven against torch.autograd of the same code run by the test itself,
in float64, on copies of the cell's leaves; never against the package's own check.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from IPython.utils.capture import capture_output  # noqa: E402

from einsum_magic.chain import record as record_module  # noqa: E402
from einsum_magic.chain.rules import RULES, rule_for  # noqa: E402
import einsum_magic.chain.rules.torch  # noqa: E402,F401 - registers the torch rules the tests replace

# The makemore part 4 data and forward cell: karpathy/nn-zero-to-hero,
# lectures/makemore/makemore_part4_backprop.ipynb (the parameters' cell adapted: float64,
# data drawn here instead of read from names.txt). The forward cell is verbatim.
MAKEMORE_SETUP = """
g = torch.Generator().manual_seed(2147483647)
vocab_size, n_embd, n_hidden, block_size = 27, 10, 64, 3
C  = torch.randn((vocab_size, n_embd), generator=g, dtype=torch.float64)
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g, dtype=torch.float64) * (5/3)/((n_embd * block_size)**0.5)
b1 = torch.randn(n_hidden, generator=g, dtype=torch.float64) * 0.1
W2 = torch.randn((n_hidden, vocab_size), generator=g, dtype=torch.float64) * 0.1
b2 = torch.randn(vocab_size, generator=g, dtype=torch.float64) * 0.1
bngain = torch.randn((1, n_hidden), generator=g, dtype=torch.float64)*0.1 + 1.0
bnbias = torch.randn((1, n_hidden), generator=g, dtype=torch.float64)*0.1
parameters = [C, W1, b1, W2, b2, bngain, bnbias]
for p in parameters:
  p.requires_grad = True
batch_size = 32
n = batch_size
Xb = torch.randint(0, vocab_size, (n, block_size), generator=g)
Yb = torch.randint(0, vocab_size, (n,), generator=g)
"""

MAKEMORE_CELL = """# forward pass, "chunkated" into smaller steps that are possible to backward one at a time

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
"""

#: The gradients Exercise 1 asks for (its cmp lines), in its order.
EXERCISE_1 = ("logprobs probs counts_sum_inv counts_sum counts norm_logits logit_maxes logits "
              "h W2 b2 hpreact bngain bnbias bnraw bnvar_inv bnvar bndiff2 bndiff bnmeani "
              "hprebn embcat W1 b1 emb C").split()


@pytest.fixture
def ip(shell):
    shell.run_cell("import torch\nimport torch.nn.functional as F\nimport numpy as np\n"
                   "import math")
    return shell


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def autograd(setup: str, cell: str, wrt, sink="loss", cotangent=None, extra=None) -> dict:
    """torch.autograd of ``cell`` run by the test in its own namespace: name → gradient.

    ``wrt``: the names whose gradients are wanted (leaves and intermediates, retained).
    """
    ns = {"torch": torch, "F": F, "np": np, "math": math, **(extra or {})}
    exec(setup, ns)
    forward = cell.split("# PyTorch backward pass")[0]
    exec(forward, ns)
    for name in wrt:
        t = ns[name]
        if t.requires_grad and not t.is_leaf:
            t.retain_grad()
    out = ns[sink]
    out.backward(cotangent if cotangent is not None else None)
    return {name: ns[name].grad.detach().numpy().copy() for name in wrt}


def close(got, want, name, rtol=1e-6):
    scale = max(float(np.max(np.abs(want))) if np.size(want) else 0.0, 1e-300)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol,
                               atol=1e-9 * scale + 1e-15, err_msg=name)


# -- makemore part 4: the worked solution of Exercise 1 ---------------------------------------

def test_makemore_cell_verbatim_gives_every_gradient_of_exercise_1(ip):
    ip.run_cell(MAKEMORE_SETUP)
    result, cap = run(ip, "%%einsum_grad -o r\n" + MAKEMORE_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert b.check.summary.startswith("cell check: PASS, 34/34 gradients match torch autograd")
    assert "26/26 match the cell's own .grad" in b.check.summary
    assert b.inputs == ("C", "W1", "b1", "bngain", "bnbias", "W2", "b2")
    assert b.sinks == ("loss",)
    want = autograd(MAKEMORE_SETUP, MAKEMORE_CELL, EXERCISE_1)
    got = b.gradients()
    assert set(EXERCISE_1) <= set(got)
    for name in EXERCISE_1:
        close(got[name], want[name], name)
    for name in ("W1", "C"):                  # by identity as well
        close(b.grad_of(ip.user_ns[name]), want[name], name)
    text = [o.data["text/plain"] for o in cap.outputs if "text/plain" in o.data][-1]
    assert text.splitlines()[0] == "cell backward: " + b.check.summary
    assert "dL_dembcat = np.einsum('ik,jk->ij', dL_dmatmul, W1_np)" in b.program.code
    assert "np.add.at(scatter_2, Xb_np, dL_demb)" in b.program.code


def test_the_shown_code_runs_pasted_into_the_next_cell(ip):
    ip.run_cell(MAKEMORE_SETUP)
    result, cap = run(ip, "%%einsum_grad -o r\n" + MAKEMORE_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    W1 = ip.user_ns["W1"]
    result, cap = run(ip, b.code)
    assert result.success, cap.stdout
    assert ip.user_ns["W1"] is W1                       # the user's values untouched
    got = b.gradients()
    for name in EXERCISE_1:
        close(ip.user_ns[b.gradient(name)], got[name], name, rtol=1e-12)


def test_the_display_is_deterministic_and_says_where_each_line_comes_from(ip):
    ip.run_cell(MAKEMORE_SETUP)
    first = run(ip, "%%einsum_grad\n" + MAKEMORE_CELL)[1]
    ip.run_cell(MAKEMORE_SETUP)
    again = run(ip, "%%einsum_grad\n" + MAKEMORE_CELL)[1]
    one = [o.data for o in first.outputs if "text/html" in o.data][-1]
    two = [o.data for o in again.outputs if "text/html" in o.data][-1]
    assert one == two
    lines = one["text/plain"].splitlines()
    assert "  line 6  dL_dembcat = np.einsum('ik,jk->ij', dL_dmatmul, W1_np)  # (32, 30)" in lines


# -- a wrong rule FAILs, a removed rule is PARTIAL ----------------------------------------------

def _wrong_tanh(node, ctx):
    from einsum_magic.chain.rules import Back

    return [Back(node.args[0], f"{ctx.g(0)} * (1 - {ctx.out(0)})")]      # should be y ** 2


def test_a_wrong_rule_makes_the_check_fail_and_the_cell_fail(ip, monkeypatch):
    ip.run_cell(MAKEMORE_SETUP)
    rule_for(type("N", (), {"framework": "torch", "op": "torch.tanh"})())
    monkeypatch.setitem(RULES, "torch.tanh", _wrong_tanh)
    result, cap = run(ip, "%%einsum_grad -o r\n" + MAKEMORE_CELL)
    assert not result.success
    b = ip.user_ns["r"].backward
    assert b.check.status == "FAIL"
    assert "hpreact" in b.check.summary.split("wrong: ")[1]
    assert "W2" not in b.check.summary.split("wrong: ")[1]          # after tanh: still right


def test_a_removed_rule_makes_the_check_partial_never_pass(ip, monkeypatch):
    ip.run_cell(MAKEMORE_SETUP)
    rule_for(type("N", (), {"framework": "torch", "op": "torch.tanh"})())
    monkeypatch.delitem(RULES, "torch.tanh")
    result, cap = run(ip, "%%einsum_grad -o r\n" + MAKEMORE_CELL)
    assert result.success, cap.stdout                     # PARTIAL is no failure of the cell
    b = ip.user_ns["r"].backward
    assert b.check.status == "PARTIAL" and "PASS" not in b.check.summary
    assert "`torch.tanh`, line 16" in b.check.summary
    assert set(b.not_derived) >= {"C", "W1", "b1", "bngain", "bnbias", "hpreact", "emb"}
    assert "W2" not in b.not_derived and "h" not in b.not_derived
    want = autograd(MAKEMORE_SETUP, MAKEMORE_CELL, ["W2", "b2", "h"])
    got = b.gradients()
    assert "W1" not in got                                  # never shown as if whole
    for name in ("W2", "b2", "h"):
        close(got[name], want[name], name)
    text = [o.data["text/plain"] for o in cap.outputs if "text/plain" in o.data][-1]
    assert "not derived: W1 (crosses `torch.tanh`, line 16)" in text.splitlines()


def test_an_opaque_operation_cuts_off_only_what_crosses_it(ip):
    ip.run_cell("X = torch.randn(4, 3, dtype=torch.float64)\n"
                "Y = torch.randn(4, 3, dtype=torch.float64)")
    cell = "S = X @ X.T\nw, V = torch.linalg.eigh(S)\nloss = (V ** 2).sum() + (X * Y).sum()"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.not_derived == {"X": "`torch.linalg.eigh`, line 2", "S": "`torch.linalg.eigh`, "
                                                                      "line 2"}
    assert b.check.status == "PARTIAL"
    assert "not derived across `torch.linalg.eigh`, line 2" in b.check.summary
    close(b.gradients()["Y"], ip.user_ns["X"].detach().numpy(), "Y")


# -- what the run did, and only once -------------------------------------------------------------

def test_an_array_changed_in_place_after_use_keeps_its_value_for_the_backward(ip):
    ip.run_cell("X = torch.randn(4, 3, dtype=torch.float64)\n"
                "W = torch.randn(3, 5, dtype=torch.float64)\nW0 = W.clone()")
    cell = "H = X @ W\nloss = torch.tanh(H).sum()\nW[:] = 0"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    assert float(ip.user_ns["W"].abs().sum()) == 0.0
    b = ip.user_ns["r"].backward
    assert b.sinks == ("loss",) and b.check.status == "PASS", b.check.summary
    W0 = ip.user_ns["W0"].clone().requires_grad_(True)
    X = ip.user_ns["X"].clone().requires_grad_(True)
    torch.tanh(X @ W0).sum().backward()
    close(b.gradients()["X"], X.grad.numpy(), "X")
    close(b.gradients()["W"], W0.grad.numpy(), "W")
    assert [b.names.name[v] for v in b.program.unavailable] == ["W"]      # not the zeros


def test_random_draws_are_taken_from_the_run_and_never_drawn_again(ip):
    ip.run_cell("X = torch.randn(4, 3, dtype=torch.float64)\n"
                "W = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)")
    cell = ("noise = torch.randn(4, 5, dtype=torch.float64)\n"
            "loss = torch.tanh(X @ W + noise).sum()")
    torch.manual_seed(7)
    exec(cell, {"torch": torch, "X": ip.user_ns["X"], "W": ip.user_ns["W"]})
    plain = torch.random.get_rng_state()
    torch.manual_seed(7)
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    assert torch.equal(torch.random.get_rng_state(), plain)     # one draw, the run's
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    W = ip.user_ns["W"].detach().clone().requires_grad_(True)
    torch.tanh(ip.user_ns["X"] @ W + ip.user_ns["noise"]).sum().backward()
    close(b.gradients()["W"], W.grad.numpy(), "W")


def test_a_call_that_draws_inside_is_named_by_the_fidelity_gate(ip):
    ip.run_cell("X = torch.randn(50, 40, dtype=torch.float64)")
    cell = "Y = F.dropout(torch.tanh(X), p=0.5, training=True)\nloss = Y.sum()"
    torch.manual_seed(3)
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    state = torch.random.get_rng_state()
    b = ip.user_ns["r"].backward
    assert b.check.status in ("UNCHECKED", "PARTIAL")
    assert b.check.status != "PASS"
    torch.manual_seed(3)
    F.dropout(torch.tanh(ip.user_ns["X"]), p=0.5, training=True)
    assert torch.equal(torch.random.get_rng_state(), state)     # the check drew nothing


def test_side_effects_run_once(ip, tmp_path):
    log = tmp_path / "log.txt"
    ip.run_cell("X = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)")
    cell = (f"import os\nos.system('echo ran >> {log}')\nprint('hello')\n"
            "H = torch.tanh(X @ X.T)\nloss = H.sum()")
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    assert log.read_text() == "ran\n"
    assert cap.stdout.count("hello") == 1
    assert ip.user_ns["r"].backward.check.status == "PASS"


def test_a_run_over_the_records_budget_shows_one_line_instead(ip, monkeypatch):
    monkeypatch.setattr(record_module, "BUDGET", 10_000)
    ip.run_cell("X = torch.randn(100, 30, dtype=torch.float64)\n"
                "W = torch.randn(30, 30, dtype=torch.float64)")
    cell = "for step in range(20):\n    X = torch.tanh(X @ W)\nloss = X.sum()"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    assert ip.user_ns["r"].backward is None
    assert ("cell backward: not recorded: the run's values exceeded the record's budget of "
            "0 MB at line 2") in cap.stdout


# -- library layers, modules, functions, batched products -----------------------------------------

MLP_SETUP = """
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.LayerNorm(8),
                            torch.nn.Linear(8, 3)).double()
x = torch.randn(6, 5, dtype=torch.float64)
y = torch.tensor([0, 2, 1, 1, 0, 2])
"""


def test_an_nn_sequential_and_cross_entropy_by_parameter_path(ip):
    ip.run_cell(MLP_SETUP)
    cell = "logits = model(x)\nloss = F.cross_entropy(logits, y, label_smoothing=0.1)"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert b.inputs == ("x", "model[0].weight", "model[0].bias", "model[2].weight",
                        "model[2].bias", "model[3].weight", "model[3].bias")
    model = ip.user_ns["model"]
    model.zero_grad()
    F.cross_entropy(model(ip.user_ns["x"]), ip.user_ns["y"], label_smoothing=0.1).backward()
    for name, p in model.named_parameters():
        close(b.grad_of(p), p.grad.numpy(), name)
    close(b.gradients()["model[0].weight"], model[0].weight.grad.numpy(), "path")


def test_a_forward_written_as_a_function(ip):
    ip.run_cell("W = torch.randn(5, 4, dtype=torch.float64)\n"
                "x = torch.randn(3, 5, dtype=torch.float64)")
    cell = ("def layer(x, W):\n    h = x @ W\n    return torch.sigmoid(h) * torch.relu(h)\n"
            "out = layer(x, W)\nloss = out.pow(2).mean()")
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    W = ip.user_ns["W"].clone().requires_grad_(True)
    h = ip.user_ns["x"] @ W
    (torch.sigmoid(h) * torch.relu(h)).pow(2).mean().backward()
    close(b.gradients()["W"], W.grad.numpy(), "W")
    assert any(bl.line == 2 for bl in b.lines)          # lines of the function's body
    assert "h" in b.intermediates                        # the function's local, by its name
    close(b.gradients()["h"], _grad_of_h(ip.user_ns["x"], ip.user_ns["W"]), "h")


def _grad_of_h(x, W):
    h = (x @ W).requires_grad_(True)
    (torch.sigmoid(h) * torch.relu(h)).pow(2).mean().backward()
    return h.grad.numpy()


# nanoGPT's causal self-attention: karpathy/nanoGPT, model.py (CausalSelfAttention.forward,
# the manual implementation), adapted to tensors made here.
ATTENTION_SETUP = """
torch.manual_seed(1)
B, T, n_head, C = 2, 5, 2, 8
q = torch.randn(B, n_head, T, C // n_head, dtype=torch.float64)
k = torch.randn(B, n_head, T, C // n_head, dtype=torch.float64)
v = torch.randn(B, n_head, T, C // n_head, dtype=torch.float64)
bias = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
"""
ATTENTION_CELL = """att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
att = att.masked_fill(bias[:,:,:T,:T] == 0, float('-inf'))
att = F.softmax(att, dim=-1)
y = att @ v # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
y = y.transpose(1, 2).contiguous().view(B, T, C)
"""


def test_nanogpt_attention_batched_products_and_versions(ip):
    ip.run_cell(ATTENTION_SETUP)
    result, cap = run(ip, "%%einsum_grad -o r\n" + ATTENTION_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert b.sinks == ("y_1",) and {"att", "att_1", "att_2", "y"} <= set(b.intermediates)
    ns = {"torch": torch, "F": F, "math": math}
    exec(ATTENTION_SETUP, ns)
    for name in "qkv":
        ns[name].requires_grad_(True)
    exec(ATTENTION_CELL, ns)
    cot = np.random.default_rng(0).standard_normal(tuple(ns["y"].shape))
    ns["y"].backward(torch.tensor(cot))
    got = b.gradients({"y_1": cot})
    for name in "qkv":
        close(got[name], ns[name].grad.numpy(), name)
    att = ip.user_ns["att"]
    ip.push({"dL_dy_1": torch.tensor(cot)})      # the sink's cotangent, defined before
    result, cap = run(ip, b.code)
    assert result.success, cap.stdout
    assert ip.user_ns["att"] is att                       # the preamble rebinds no name of yours
    for name in "qkv":
        close(ip.user_ns[f"dL_d{name}"], ns[name].grad.numpy(), name)


ELEMENTWISE_CELL = """a = torch.cat([x, x * 2], dim=1).unsqueeze(0).squeeze(0)
s = torch.stack([a, a.exp()], dim=0).permute(1, 0, 2).reshape(4, 12)
v = s.var(0, keepdim=True, unbiased=True) + s.std(1, keepdim=True)
q = torch.rsqrt(v + 1.0) * torch.pow(s, 3.0).clamp(min=-2.0)
m = torch.where(s > 0.1, q, torch.sigmoid(s)).expand(2, 4, 12)
out = F.log_softmax(F.gelu(m, approximate='tanh'), dim=-1) + F.layer_norm(m, (12,))
loss = out.sum() + F.mse_loss(s, torch.zeros_like(s)) + s.abs().max()
"""


def test_elementwise_reductions_and_shape_ops_match_autograd(ip):
    ip.run_cell("torch.manual_seed(2)\nx = torch.randn(4, 3, dtype=torch.float64)")
    result, cap = run(ip, "%%einsum_grad -o r\n" + ELEMENTWISE_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert not b.program.opaque
    x = ip.user_ns["x"].clone().requires_grad_(True)
    ns = {"torch": torch, "F": F, "x": x}
    exec(ELEMENTWISE_CELL, ns)
    ns["loss"].backward()
    close(b.gradients()["x"], x.grad.numpy(), "x")


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_in_training_and_in_eval_mode(ip, training):
    ip.run_cell("torch.manual_seed(4)\n"
                "net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8),\n"
                "                          torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()\n"
                "net[1].running_var.uniform_(0.5, 2.0)\n"
                f"net.train({training})\n"
                "x = torch.randn(6, 5, dtype=torch.float64)\ny = torch.tensor([0, 2, 1, 1, 0, 2])")
    net = ip.user_ns["net"]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    cell = "loss = F.cross_entropy(net(x), y)"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    after = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(state)                       # the same step again, under autograd
    net.zero_grad()
    F.cross_entropy(net(ip.user_ns["x"]), ip.user_ns["y"]).backward()
    for key, value in net.state_dict().items():      # running statistics moved once
        assert torch.equal(value, after[key]), key
    for name, p in net.named_parameters():
        close(b.grad_of(p), p.grad.numpy(), name)


def test_a_call_without_a_rule_is_derived_through_torchs_own_decomposition(ip):
    ip.run_cell("torch.manual_seed(5)\nx = torch.randn(4, 6, dtype=torch.float64)\n"
                "W = torch.randn(6, 6, dtype=torch.float64)")
    cell = ("h = F.softplus(x @ W)\nz = F.leaky_relu(h - 1.0, 0.1)\n"
            "loss = F.normalize(z, dim=1).sum()")
    assert not any(op in RULES for op in ("torch.nn.functional.softplus",
                                          "torch.nn.functional.leaky_relu"))
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert not b.program.opaque
    W = ip.user_ns["W"].clone().requires_grad_(True)
    F.normalize(F.leaky_relu(F.softplus(ip.user_ns["x"] @ W) - 1.0, 0.1), dim=1).sum().backward()
    close(b.gradients()["W"], W.grad.numpy(), "W")
    result, cap = run(ip, b.code)                      # the parts recomputed, pasted
    assert result.success, cap.stdout
    close(ip.user_ns["dL_dW"], W.grad.numpy(), "W pasted")


def test_makemore_in_float32_as_in_the_lecture_is_checked_in_float64(ip):
    setup = MAKEMORE_SETUP.replace("dtype=torch.float64", "dtype=torch.float32")
    ip.run_cell(setup)
    result, cap = run(ip, "%%einsum_grad -o r\n" + MAKEMORE_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary          # replayed in float64
    assert "26/26 match the cell's own .grad" in b.check.summary   # float32's tolerance
    params = {k: ip.user_ns[k].detach().double().requires_grad_(True)
              for k in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")}
    extra = {**params, "Xb": ip.user_ns["Xb"], "Yb": ip.user_ns["Yb"], "n": 32,
             "parameters": list(params.values())}
    want = autograd("", MAKEMORE_CELL, EXERCISE_1, extra=extra)   # float64, the same data
    got = b.gradients()
    largest = max(float(np.max(np.abs(w))) for w in want.values())
    for name in EXERCISE_1:               # float32 rounding, against the cell's largest
        assert got[name].dtype == np.float32, name
        scale = float(np.max(np.abs(want[name])))
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3,
                                   atol=1e-4 * scale + 1e-6 * largest, err_msg=name)


def test_one_product_alone_gets_no_cell_backward_and_two_steps_do(ip):
    ip.run_cell("A = torch.randn(2, 3, dtype=torch.float64)\n"
                "B = torch.randn(3, 4, dtype=torch.float64)")
    result, cap = run(ip, "%%einsum_grad -o r\nC = A @ B")
    assert result.success, cap.stdout
    assert ip.user_ns["r"].backward is None
    result, cap = run(ip, "%%einsum_grad -o r\nC = torch.relu(A @ B)")
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS" and b.sinks == ("C",)
    g = np.random.default_rng(0).standard_normal((2, 4))
    A = ip.user_ns["A"].clone().requires_grad_(True)
    torch.relu(A @ ip.user_ns["B"]).backward(torch.tensor(g))
    close(b.gradients({"C": g})["A"], A.grad.numpy(), "A")
    with pytest.raises(ValueError, match="missing dL_dC"):
        b.gradients()                              # a sink that is not a scalar: give it


# An LSTM step as course code writes it (gates from one product, chunked), and PyTorch's
# fused attention, which has no rule of its own: torch's decomposition derives it.
LSTM_CELL = """gates = x @ Wx + h0 @ Wh + b
i, f, g, o = gates.chunk(4, dim=1)
c1 = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
h1 = torch.sigmoid(o) * torch.tanh(c1)
y = F.scaled_dot_product_attention(h1[None], h1[None], h1[None], is_causal=True)
loss = F.dropout(y, p=0.1, training=False).pow(2).sum()
"""


def test_an_lstm_step_and_fused_attention(ip):
    ip.run_cell("torch.manual_seed(6)\nH = 4\n"
                "x = torch.randn(3, 5, dtype=torch.float64)\n"
                "Wx = torch.randn(5, 4 * H, dtype=torch.float64)\n"
                "Wh = torch.randn(H, 4 * H, dtype=torch.float64)\n"
                "b = torch.randn(4 * H, dtype=torch.float64)\n"
                "h0 = torch.randn(3, H, dtype=torch.float64)\nc0 = torch.randn(3, H, dtype=torch.float64)")
    result, cap = run(ip, "%%einsum_grad -o r\n" + LSTM_CELL)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", (b.check.summary, b.notes)
    leaves = {k: ip.user_ns[k].clone().requires_grad_(True) for k in ("x", "Wx", "Wh", "b",
                                                                     "h0", "c0")}
    ns = {"torch": torch, "F": F, **leaves}
    exec(LSTM_CELL, ns)
    ns["loss"].backward()
    got = b.gradients()
    for name, t in leaves.items():
        close(got[name], t.grad.numpy(), name)
    result, cap = run(ip, b.code)                      # parts recomputed by their aten names
    assert result.success, cap.stdout
    close(ip.user_ns["dL_dWx"], leaves["Wx"].grad.numpy(), "Wx pasted")


def test_an_in_place_update_is_an_operation_with_versions(ip):
    ip.run_cell("x = torch.randn(3, 4, dtype=torch.float64)\n"
                "W = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)")
    cell = "h = x @ W\nh += 1.5 * h\nh.mul_(2.0)\nloss = torch.tanh(h).sum()"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    assert {"h", "h_1", "h_2"} <= set(b.intermediates)
    W = ip.user_ns["W"].detach().clone().requires_grad_(True)
    h = ip.user_ns["x"] @ W
    h += 1.5 * h
    h.mul_(2.0)
    torch.tanh(h).sum().backward()
    close(b.gradients()["W"], W.grad.numpy(), "W")
    close(b.grad_of(ip.user_ns["h"]), 1 - np.tanh(h.detach().numpy()) ** 2, "h (last)")


def test_a_long_loop_stops_the_record_with_one_line(ip, monkeypatch):
    monkeypatch.setattr(record_module, "MAX_REPEATS", 5)
    ip.run_cell("X = torch.randn(10, 3, dtype=torch.float64)\n"
                "W = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)")
    cell = ("for step in [0] * 10:\n    loss = torch.tanh(X @ W).sum()\n    loss.backward()\n"
            "    with torch.no_grad():\n        W -= 0.1 * W.grad\n        W.grad = None")
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    assert ip.user_ns["r"].backward is None
    assert ("cell backward: not recorded: line 2 ran `torch.Tensor.matmul` more than 5 times "
            "(a loop)") in cap.stdout
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell.replace("[0] * 10", "range(10)"))
    assert result.success and ip.user_ns["r"].backward is None, cap.stdout
    assert ("cell backward: not recorded: line 2 runs 10 times (the loop of line 1: for step "
            "in range(10)), more than 5") in cap.stdout


def test_the_pasted_code_never_draws_again_and_says_what_it_cannot_bind(ip):
    """A dropout mask of the run is never recomputed by the preamble (it would be another
    draw); an array changed behind the record's back (``W.data.zero_()``) is not read from
    the namespace. Both are named in one comment line. With ``-o r`` the code reads them
    from ``r.backward.value`` (the run's values) and every gradient pasted equals
    ``gradients()``; without a kept result the lines that need them are comments and the
    rest runs."""
    ip.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3, dtype=torch.float64)\n"
                "W = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)\n"
                "V = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)\n"
                "U = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)")
    cell = ("h = F.dropout(torch.tanh(x @ W), 0.5, training=True) @ V\n"
            "loss = (h @ U).sum()\nU.data.zero_()")
    result, cap = run(ip, "%%einsum_grad -o r --no-check\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    want = b.gradients()
    code = b.code
    assert "dropout(" not in code and "U.detach()" not in code, code
    first = code.splitlines()[0]
    assert first.startswith("# not in the namespace") and "U" in first and "dropout" in first
    assert "r.backward.value('U')" in code, code
    assert b.value("U").any() and not b.value("U").flags.writeable     # the run's, not zeros
    for name in ("dL_dh", "dL_dV", "dL_dU", "dL_dW"):
        ip.user_ns.pop(name, None)
    result, cap = run(ip, code)
    assert result.success, cap.stdout
    assert {"U", "V"} <= set(want)
    for name in want:
        close(ip.user_ns[b.gradient(name)], want[name], f"{name} pasted")
    alone = dataclasses.replace(b, holder="").code          # no result kept to read from
    assert alone.splitlines()[0].startswith("# not in the namespace") and "value(" not in alone
    for name in ("dL_dh", "dL_dV", "dL_dU", "dL_dW"):
        ip.user_ns.pop(name, None)
    result, cap = run(ip, alone)
    assert result.success, cap.stdout
    close(ip.user_ns["dL_dU"], want["U"], "U")          # reads h, bound by identity
    assert "dL_dV" not in ip.user_ns and "dL_dW" not in ip.user_ns   # need U's old value


def test_the_pasted_code_recomputes_a_version_made_in_place_out_of_place(ip):
    """``s = h * h`` reads the version of h made by ``h += 1.0``, which ``h *= 2.0`` replaced:
    the preamble recomputes it with the same call out of place, and never rebinds ``h``."""
    ip.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3, dtype=torch.float64)\n"
                "W = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)")
    cell = "h = x @ W\nh += 1.0\ns = h * h\nh *= 2.0\nloss = (s * h).sum()"
    result, cap = run(ip, "%%einsum_grad -o r\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["r"].backward
    assert b.check.status == "PASS", b.check.summary
    code, h = b.code, ip.user_ns["h"]
    assert "torch.Tensor.add(" in code and not code.startswith("# not in"), code
    ip.user_ns.pop("dL_dW", None)
    result, cap = run(ip, code)
    assert result.success, cap.stdout
    assert ip.user_ns["h"] is h
    W = ip.user_ns["W"].detach().clone().requires_grad_(True)
    hh = ip.user_ns["x"] @ W + 1.0        # the same values, out of place for autograd
    ((hh * hh) * (hh * 2.0)).sum().backward()
    close(ip.user_ns["dL_dW"], W.grad.numpy(), "W pasted")


def test_arrays_held_in_lists_and_objects_are_named_by_their_path():
    from einsum_magic.chain.recorders import recording
    from einsum_magic.chain.result import from_recording

    """makemore's layers (plain objects in a list): their arrays by path, an attribute path
    before a list index; an object whose __dict__ misbehaves is skipped, never an error."""
    class Layer:
        def __init__(self, w):
            self.weight = w

    class Strange:
        @property
        def __dict__(self):
            raise RuntimeError("no")

    w0, w1, x = (torch.randn(*s, dtype=torch.float64) for s in ((3, 4), (4, 2), (5, 3)))
    layers = [Layer(w0), Layer(w1)]
    ns = {"x": x, "layers": layers, "params": [w0, w1], "odd": Strange()}
    with recording(ns) as rec:
        loss = (torch.tanh(x @ w0) @ w1).sum()
    ns["loss"] = loss
    b = from_recording(rec, ns, check=False)
    assert {"layers[0].weight", "layers[1].weight", "x"} <= set(b.inputs), b.inputs
    assert "layers_0_weight_np = layers[0].weight.detach().numpy()" in b.code, b.code

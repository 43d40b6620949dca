"""Forward passes from public code, as data: the acceptance cases of the cell backward.

Each :class:`Case` names the repository and file its cell comes from (adapted minimally: small
sizes, data the case makes itself, seeded, float64), the code run before it (``setup``), the
cell run under ``%%einsum_grad -o r``, the framework, and the expressions whose gradients are
compared (``wrt``: inputs, module parameters such as ``model[0].weight``, named intermediates),
evaluated in the namespace after the cell. ``sink`` is the value differentiated; with
``cotangent`` it is not a scalar and takes a seeded random cotangent. The reference gradients
are computed by :mod:`tests.chain.test_public_passes` with the framework's own autodiff, never
through einsum_magic: torch cells are run again in a namespace of their own and differentiated
with ``torch.autograd.grad``; JAX cells with ``jax.vjp`` (intermediates through zero probes
added after their assignment); NumPy cells have ``reference``, the same forward re-written by
hand in torch (``reference(t, ns)``: ``t`` the setup's arrays as float64 tensors, ``ns`` the
setup's namespace; returns the named values). ``opaque`` names an operation the record has no
rule for: the check must say PARTIAL and name it, and ``crossing`` lists what is then not
derived.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import makemore

__all__ = ["Case", "CASES", "by_name"]


@dataclass(frozen=True)
class Case:
    name: str
    source: str                       # "owner/repo path", or the issue for a regression case
    framework: str                    # "torch" | "jax" | "numpy"
    setup: str
    cell: str
    wrt: tuple[str, ...]
    sink: str = "loss"
    cotangent: bool = False           # a non-scalar sink: seeded random cotangent
    reference: Callable[..., Any] | None = None
    prepare: Callable[[], dict] | None = None     # adds to the namespace after ``setup``
    opaque: str = ""                  # an operation without a rule: PARTIAL, naming it
    crossing: tuple[str, ...] = ()    # expressions whose path crosses ``opaque``
    values: tuple[str, ...] = ()      # more expressions compared with a plain run
    flags: str = ""


CASES: list[Case] = []


def case(*args, **kwargs) -> Case:
    c = Case(*args, **kwargs)
    CASES.append(c)
    return c


def by_name(name: str) -> Case:
    (c,) = [c for c in CASES if c.name == name]
    return c


# ============================================================================ torch

TORCH = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
F64 = "dtype=torch.float64"

# -- karpathy/nn-zero-to-hero lectures/makemore/makemore_part4_backprop.ipynb (verbatim cell)
case("makemore4_backprop_ninja",
     "karpathy/nn-zero-to-hero lectures/makemore/makemore_part4_backprop.ipynb",
     "torch", "", makemore.FORWARD,
     wrt=tuple(makemore.of(d) for d in makemore.GRADIENTS),
     prepare=lambda: makemore.data(makemore.SEED),
     reference=lambda ns, cot: {makemore.of(d): g for d, g in
                                makemore.autograd_reference(ns).items()})

# -- karpathy/nn-zero-to-hero lectures/makemore/makemore_part3_bn.ipynb (the inline batch norm)
MAKEMORE3_DATA = TORCH + f"""
g = torch.Generator().manual_seed(2147483647)
vocab_size, block_size, n_embd, n_hidden, batch_size = 27, 3, 10, 20, 32
C  = torch.randn((vocab_size, n_embd),            generator=g, {F64})
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g, {F64}) * (5/3)/((n_embd * block_size)**0.5)
W2 = torch.randn((n_hidden, vocab_size),          generator=g, {F64}) * 0.01
b2 = torch.randn(vocab_size,                      generator=g, {F64}) * 0
Xb = torch.randint(0, vocab_size, (batch_size, block_size), generator=g)
Yb = torch.randint(0, vocab_size, (batch_size,), generator=g)
"""
case("makemore3_batchnorm_inline",
     "karpathy/nn-zero-to-hero lectures/makemore/makemore_part3_bn.ipynb", "torch",
     MAKEMORE3_DATA + f"""
bngain = torch.ones((1, n_hidden), {F64})
bnbias = torch.zeros((1, n_hidden), {F64})
bnmean_running = torch.zeros((1, n_hidden), {F64})
bnstd_running = torch.ones((1, n_hidden), {F64})
parameters = [C, W1, W2, b2, bngain, bnbias]
for p in parameters:
  p.requires_grad = True
""", """\
# forward pass
emb = C[Xb] # embed the characters into vectors
embcat = emb.view(emb.shape[0], -1) # concatenate the vectors
# Linear layer
hpreact = embcat @ W1 #+ b1 # hidden layer pre-activation
# BatchNorm layer
# -------------------------------------------------------------
bnmeani = hpreact.mean(0, keepdim=True)
bnstdi = hpreact.std(0, keepdim=True)
hpreact = bngain * (hpreact - bnmeani) / bnstdi + bnbias
with torch.no_grad():
  bnmean_running = 0.999 * bnmean_running + 0.001 * bnmeani
  bnstd_running = 0.999 * bnstd_running + 0.001 * bnstdi
# -------------------------------------------------------------
# Non-linearity
h = torch.tanh(hpreact) # hidden layer
logits = h @ W2 + b2 # output layer
loss = F.cross_entropy(logits, Yb) # loss function
""", wrt=("C", "W1", "W2", "b2", "bngain", "bnbias", "emb", "embcat", "bnmeani", "bnstdi", "h",
          "logits"), values=("bnmean_running", "bnstd_running"))

# -- karpathy/nn-zero-to-hero lectures/makemore/makemore_part3_bn.ipynb ("PyTorch-ifying" layers)
case("makemore3_layers",
     "karpathy/nn-zero-to-hero lectures/makemore/makemore_part3_bn.ipynb", "torch",
     MAKEMORE3_DATA + f"""
class Linear:

  def __init__(self, fan_in, fan_out, bias=True):
    self.weight = torch.randn((fan_in, fan_out), generator=g, {F64}) / fan_in**0.5
    self.bias = torch.zeros(fan_out, {F64}) if bias else None

  def __call__(self, x):
    self.out = x @ self.weight
    if self.bias is not None:
      self.out += self.bias
    return self.out

  def parameters(self):
    return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:

  def __init__(self, dim, eps=1e-5, momentum=0.1):
    self.eps = eps
    self.momentum = momentum
    self.training = True
    # parameters (trained with backprop)
    self.gamma = torch.ones(dim, {F64})
    self.beta = torch.zeros(dim, {F64})
    # buffers (trained with a running 'momentum update')
    self.running_mean = torch.zeros(dim, {F64})
    self.running_var = torch.ones(dim, {F64})

  def __call__(self, x):
    # calculate the forward pass
    if self.training:
      xmean = x.mean(0, keepdim=True) # batch mean
      xvar = x.var(0, keepdim=True) # batch variance
    else:
      xmean = self.running_mean
      xvar = self.running_var
    xhat = (x - xmean) / torch.sqrt(xvar + self.eps) # normalize to unit variance
    self.out = self.gamma * xhat + self.beta
    # update the buffers
    if self.training:
      with torch.no_grad():
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
    return self.out

  def parameters(self):
    return [self.gamma, self.beta]

class Tanh:
  def __call__(self, x):
    self.out = torch.tanh(x)
    return self.out
  def parameters(self):
    return []

layers = [
  Linear(n_embd * block_size, n_hidden, bias=True), BatchNorm1d(n_hidden), Tanh(),
  Linear(           n_hidden, vocab_size, bias=False), BatchNorm1d(vocab_size),
]
with torch.no_grad():
  # last layer: make less confident
  layers[-1].gamma *= 0.1
parameters = [C] + [p for layer in layers for p in layer.parameters()]
for p in parameters:
  p.requires_grad = True
""", """\
emb = C[Xb] # embed the characters into vectors
x = emb.view(emb.shape[0], -1) # concatenate the vectors
for layer in layers:
  x = layer(x)
loss = F.cross_entropy(x, Yb) # loss function
""", wrt=("C", "emb", "layers[0].weight", "layers[0].bias", "layers[1].gamma", "layers[1].beta",
          "layers[2].out", "layers[3].weight", "layers[4].gamma", "layers[4].beta"),
     values=("layers[1].running_mean", "layers[4].running_var"))

# -- karpathy/nanoGPT model.py: CausalSelfAttention (the manual path), MLP, LayerNorm
NANOGPT = TORCH + """from dataclasses import dataclass

@dataclass
class GPTConfig:
    block_size: int = 8
    vocab_size: int = 11
    n_head: int = 2
    n_embd: int = 8
    dropout: float = 0.0
    bias: bool = True

class LayerNorm(nn.Module):
    \"\"\" LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False \"\"\"

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)

class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, but in a batch
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # regularization
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # the manual implementation (nanoGPT's path without scaled_dot_product_attention)
        self.flash = False
        # causal mask to ensure that attention is only applied to the left in the input sequence
        self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                    .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size() # batch size, sequence length, embedding dimensionality (n_embd)

        # calculate query, key, values for all heads in batch and move head forward to be the batch dim
        q, k, v  = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)

        # manual implementation of attention
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:,:,:T,:T] == 0, float('-inf'))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C) # re-assemble all head outputs side by side

        # output projection
        y = self.resid_dropout(self.c_proj(y))
        return y

class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc    = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu    = nn.GELU()
        self.c_proj  = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        x = self.dropout(x)
        return x

torch.manual_seed(0)
config = GPTConfig()
"""

case("nanogpt_attention_module", "karpathy/nanoGPT model.py", "torch",
     NANOGPT + "attn = CausalSelfAttention(config).double()\n"
     f"x = torch.randn(2, 6, config.n_embd, {F64}, requires_grad=True)\n",
     "y = attn(x)\n", sink="y", cotangent=True,
     wrt=("x", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias"))

case("nanogpt_attention_inline", "karpathy/nanoGPT model.py", "torch",
     NANOGPT + "attn = CausalSelfAttention(config).double()\n"
     f"x = torch.randn(2, 6, config.n_embd, {F64}, requires_grad=True)\n"
     f"target = torch.randn(2, 6, config.n_embd, {F64})\n", """\
B, T, C = x.size() # batch size, sequence length, embedding dimensionality (n_embd)
q, k, v  = attn.c_attn(x).split(attn.n_embd, dim=2)
k = k.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) # (B, nh, T, hs)
q = q.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) # (B, nh, T, hs)
v = v.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) # (B, nh, T, hs)
att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
att = att.masked_fill(attn.bias[:,:,:T,:T] == 0, float('-inf'))
att = F.softmax(att, dim=-1)
y = att @ v # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
y = y.transpose(1, 2).contiguous().view(B, T, C) # re-assemble all head outputs side by side
out = attn.c_proj(y)
loss = F.mse_loss(out, target)
""", wrt=("x", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "q", "k", "v",
          "att", "y", "out"))

case("nanogpt_mlp_gelu", "karpathy/nanoGPT model.py", "torch",
     NANOGPT + "mlp = MLP(config).double()\n"
     f"x = torch.randn(2, 5, config.n_embd, {F64}, requires_grad=True)\n",
     "y = mlp(x)\nloss = y.pow(2).mean()\n",
     wrt=("x", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "y"))

case("nanogpt_head_cross_entropy_ignore_index", "karpathy/nanoGPT model.py", "torch",
     NANOGPT + f"""ln_f = LayerNorm(config.n_embd, bias=config.bias).double()
lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False).double()
with torch.no_grad():
    ln_f.weight.add_(0.1 * torch.randn(config.n_embd, {F64}))
    ln_f.bias.add_(0.1 * torch.randn(config.n_embd, {F64}))
h = torch.randn(2, 5, config.n_embd, {F64}, requires_grad=True)
targets = torch.randint(0, config.vocab_size, (2, 5))
targets[0, -2:] = -1
""", """\
x = ln_f(h)
logits = lm_head(x)
loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
""", wrt=("h", "ln_f.weight", "ln_f.bias", "lm_head.weight", "x", "logits"))

# -- meta-llama/llama llama/model.py: RMSNorm, FeedForward (SwiGLU), attention scores
LLAMA = TORCH + """
class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float()).type_as(x)
        return output * self.weight


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, multiple_of: int):
        super().__init__()
        hidden_dim = int(2 * hidden_dim / 3)
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)

        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

torch.manual_seed(0)
"""

case("llama_rmsnorm", "meta-llama/llama llama/model.py", "torch",
     LLAMA + f"""norm = RMSNorm(8, eps=1e-5).double()
with torch.no_grad():
    norm.weight.add_(0.1 * torch.randn(8, {F64}))
x = torch.randn(2, 3, 8, {F64}, requires_grad=True)
w = torch.randn(2, 3, 8, {F64})
""", "out = norm(x)\nloss = (out * w).sum()\n", wrt=("x", "norm.weight", "out"))

case("llama_feedforward_swiglu", "meta-llama/llama llama/model.py", "torch",
     LLAMA + f"""ff = FeedForward(dim=8, hidden_dim=4 * 8, multiple_of=4).double()
h = torch.randn(2, 3, 8, {F64}, requires_grad=True)
""", "y = ff(h)\nloss = y.square().mean()\n",
     wrt=("h", "ff.w1.weight", "ff.w2.weight", "ff.w3.weight", "y"))

case("llama_attention_scores", "meta-llama/llama llama/model.py", "torch",
     LLAMA + f"""bsz, seqlen, n_local_heads, head_dim, start_pos = 2, 5, 2, 4, 0
xq_in = torch.randn(bsz, seqlen, n_local_heads, head_dim, {F64}, requires_grad=True)
keys_in = torch.randn(bsz, seqlen, n_local_heads, head_dim, {F64}, requires_grad=True)
values_in = torch.randn(bsz, seqlen, n_local_heads, head_dim, {F64}, requires_grad=True)
w = torch.randn(bsz, seqlen, n_local_heads * head_dim, {F64})
""", """\
mask = torch.full((1, 1, seqlen, seqlen), float("-inf"))
mask = torch.triu(mask, diagonal=start_pos + 1).type_as(xq_in)
xq = xq_in.transpose(1, 2)
keys = keys_in.transpose(1, 2)
values = values_in.transpose(1, 2)
scores = torch.matmul(xq, keys.transpose(2, 3)) / math.sqrt(head_dim)
scores = scores + mask  # (bs, n_local_heads, slen, cache_len + slen)
scores = F.softmax(scores.float(), dim=-1).type_as(xq)
output = torch.matmul(scores, values)  # (bs, n_local_heads, slen, head_dim)
output = output.transpose(1, 2).contiguous().view(bsz, seqlen, -1)
loss = (output * w).sum()
""", wrt=("xq_in", "keys_in", "values_in", "xq", "keys", "values", "scores", "output"))

# -- pytorch/tutorials beginner_source/basics/buildmodel_tutorial.py: nn.Sequential
case("tutorial_sequential_label_smoothing",
     "pytorch/tutorials beginner_source/basics/buildmodel_tutorial.py", "torch",
     TORCH + f"""
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(4*4, 12),
            nn.ReLU(),
            nn.Linear(12, 12),
            nn.ReLU(),
            nn.Linear(12, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits

torch.manual_seed(0)
model = NeuralNetwork().double()
X = torch.rand(6, 4, 4, {F64})
y = torch.randint(0, 10, (6,))
""", "logits = model(X)\nloss = F.cross_entropy(logits, y, label_smoothing=0.1)\n",
     wrt=("model.linear_relu_stack[0].weight", "model.linear_relu_stack[0].bias",
          "model.linear_relu_stack[2].weight", "model.linear_relu_stack[4].weight",
          "model.linear_relu_stack[4].bias", "logits"))

# -- pytorch/examples mnist/main.py: Net (its fully connected half), test(): nll_loss(sum)
case("mnist_nll_loss_sum", "pytorch/examples mnist/main.py", "torch",
     TORCH + f"""
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(36, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output

torch.manual_seed(1)
model = Net().double()
model.eval()
data = torch.randn(5, 1, 6, 6, {F64}, requires_grad=True)
target = torch.randint(0, 10, (5,))
""", """\
output = model(data)
test_loss = F.nll_loss(output, target, reduction='sum')  # sum up batch loss
pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
correct = pred.eq(target.view_as(pred)).sum().item()
""", sink="test_loss", wrt=("data", "model.fc1.weight", "model.fc1.bias", "model.fc2.weight",
                            "output"), values=("pred", "correct"))

# -- pytorch/examples regression/main.py: polynomial features, nn.Linear, smooth_l1_loss
case("regression_poly_smooth_l1", "pytorch/examples regression/main.py", "torch",
     TORCH + f"""
POLY_DEGREE = 4
torch.manual_seed(0)
W_target = torch.randn(POLY_DEGREE, 1, {F64}) * 5
b_target = torch.randn(1, {F64}) * 5


def make_features(x):
    \"\"\"Builds features i.e. a matrix with columns [x, x^2, x^3, x^4].\"\"\"
    x = x.unsqueeze(1)
    return torch.cat([x ** i for i in range(1, POLY_DEGREE+1)], 1)


def f(x):
    \"\"\"Approximated function.\"\"\"
    return x.mm(W_target) + b_target.item()


def get_batch(batch_size=32):
    \"\"\"Builds a batch i.e. (x, f(x)) pair.\"\"\"
    random = torch.randn(batch_size, {F64})
    x = make_features(random)
    y = f(x)
    return x, y


# Define model
fc = torch.nn.Linear(W_target.size(0), 1).double()
""", """\
# Get data
batch_x, batch_y = get_batch()

# Reset gradients
fc.zero_grad()

# Forward pass
output = F.smooth_l1_loss(fc(batch_x), batch_y)
loss = output.item()
""", sink="output", wrt=("fc.weight", "fc.bias"), values=("batch_x", "loss"))

# -- karpathy/makemore makemore.py: RNN language model with RNNCell / GRUCell
MAKEMORE_RNN = TORCH + """from dataclasses import dataclass

@dataclass
class ModelConfig:
    block_size: int = 5
    vocab_size: int = 7
    n_embd: int = 6
    n_embd2: int = 8

class RNNCell(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.xh_to_h = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)

    def forward(self, xt, hprev):
        xh = torch.cat([xt, hprev], dim=1)
        ht = F.tanh(self.xh_to_h(xh))
        return ht

class GRUCell(nn.Module):
    def __init__(self, config):
        super().__init__()
        # input, forget, output, gate
        self.xh_to_z = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)
        self.xh_to_r = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)
        self.xh_to_hbar = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)

    def forward(self, xt, hprev):
        # first use the reset gate to wipe some channels of the hidden state to zero
        xh = torch.cat([xt, hprev], dim=1)
        r = F.sigmoid(self.xh_to_r(xh))
        hprev_reset = r * hprev
        # calculate the candidate new hidden state hbar
        xhr = torch.cat([xt, hprev_reset], dim=1)
        hbar = F.tanh(self.xh_to_hbar(xhr))
        # calculate the switch gate that determines if each channel should be updated at all
        z = F.sigmoid(self.xh_to_z(xh))
        # blend the previous hidden state and the new candidate hidden state
        ht = (1 - z) * hprev + z * hbar
        return ht

class RNN(nn.Module):

    def __init__(self, config, cell_type):
        super().__init__()
        self.block_size = config.block_size
        self.vocab_size = config.vocab_size
        self.start = nn.Parameter(torch.zeros(1, config.n_embd2)) # the starting hidden state
        self.wte = nn.Embedding(config.vocab_size, config.n_embd) # token embeddings table
        if cell_type == 'rnn':
            self.cell = RNNCell(config)
        elif cell_type == 'gru':
            self.cell = GRUCell(config)
        self.lm_head = nn.Linear(config.n_embd2, self.vocab_size)

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()

        # embed all the integers up front and all at once for efficiency
        emb = self.wte(idx) # (b, t, n_embd)

        # sequentially iterate over the inputs and update the RNN state each tick
        hprev = self.start.expand((b, -1)) # expand out the batch dimension
        hiddens = []
        for i in range(t):
            xt = emb[:, i, :] # (b, n_embd)
            ht = self.cell(xt, hprev) # (b, n_embd2)
            hprev = ht
            hiddens.append(ht)

        # decode the outputs
        hidden = torch.stack(hiddens, 1) # (b, t, n_embd2)
        logits = self.lm_head(hidden)

        # if we are given some desired targets also calculate the loss
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)

        return logits, loss

torch.manual_seed(3)
config = ModelConfig()
idx = torch.randint(0, config.vocab_size, (3, config.block_size))
targets = torch.randint(0, config.vocab_size, (3, config.block_size))
targets[:, -1] = -1
"""
case("makemore_rnn", "karpathy/makemore makemore.py", "torch",
     MAKEMORE_RNN + "model = RNN(config, cell_type='rnn').double()\n"
     "with torch.no_grad():\n    model.start.normal_()\n",
     "logits, loss = model(idx, targets)\n",
     wrt=("model.start", "model.wte.weight", "model.cell.xh_to_h.weight", "model.cell.xh_to_h.bias",
          "model.lm_head.weight", "logits"))

case("makemore_gru", "karpathy/makemore makemore.py", "torch",
     MAKEMORE_RNN + "model = RNN(config, cell_type='gru').double()\n"
     "with torch.no_grad():\n    model.start.normal_()\n",
     "logits, loss = model(idx, targets)\n",
     wrt=("model.start", "model.wte.weight", "model.cell.xh_to_z.weight", "model.cell.xh_to_r.weight",
          "model.cell.xh_to_hbar.bias", "model.lm_head.bias", "logits"))

# -- pytorch/pytorch benchmarks/fastrnns/cells.py: lstm_cell, defined in the cell, two steps
case("fastrnns_lstm_cell_def_in_cell", "pytorch/pytorch benchmarks/fastrnns/cells.py", "torch",
     TORCH + f"""torch.manual_seed(0)
x = torch.randn(2, 3, 5, {F64}, requires_grad=True)
h0 = torch.randn(3, 4, {F64}, requires_grad=True)
c0 = torch.randn(3, 4, {F64}, requires_grad=True)
w_ih = torch.randn(16, 5, {F64}, requires_grad=True)
w_hh = torch.randn(16, 4, {F64}, requires_grad=True)
b_ih = torch.randn(16, {F64}, requires_grad=True)
b_hh = torch.randn(16, {F64}, requires_grad=True)
dh = torch.randn(3, 4, {F64})
dc = torch.randn(3, 4, {F64})
""", """\
def lstm_cell(input, hidden, w_ih, w_hh, b_ih, b_hh):
    # type: (Tensor, Tuple[Tensor, Tensor], Tensor, Tensor, Tensor, Tensor) -> Tuple[Tensor, Tensor]
    hx, cx = hidden
    gates = torch.mm(input, w_ih.t()) + torch.mm(hx, w_hh.t()) + b_ih + b_hh

    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)

    ingate = torch.sigmoid(ingate)
    forgetgate = torch.sigmoid(forgetgate)
    cellgate = torch.tanh(cellgate)
    outgate = torch.sigmoid(outgate)

    cy = (forgetgate * cx) + (ingate * cellgate)
    hy = outgate * torch.tanh(cy)

    return hy, cy

h1, c1 = lstm_cell(x[0], (h0, c0), w_ih, w_hh, b_ih, b_hh)
h2, c2 = lstm_cell(x[1], (h1, c1), w_ih, w_hh, b_ih, b_hh)
loss = (h2 * dh).sum() + (c2 * dc).sum()
""", wrt=("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "h1", "c1"))

# -- karpathy/llm.c doc/layernorm/layernorm.py: LayerNorm.forward and its fake loss
case("llmc_layernorm", "karpathy/llm.c doc/layernorm/layernorm.py", "torch",
     TORCH + f"""
eps = 1e-5

class LayerNorm:

    @staticmethod
    def forward(x, w, b):
        # x is the input activations, of shape B,T,C
        # w are the weights, of shape C
        # b are the biases, of shape C
        B, T, C = x.size()
        # calculate the mean
        mean = x.sum(-1, keepdim=True) / C # B,T,1
        # calculate the variance
        xshift = x - mean # B,T,C
        var = (xshift**2).sum(-1, keepdim=True) / C # B,T,1
        # calculate the inverse standard deviation: **0.5 is sqrt, **-0.5 is 1/sqrt
        rstd = (var + eps) ** -0.5 # B,T,1
        # normalize the input activations
        norm = xshift * rstd # B,T,C
        # scale and shift the normalized activations at the end
        out = norm * w + b # B,T,C

        # return the output and the cache, of variables needed later during the backward pass
        cache = (x, w, mean, rstd)
        return out, cache

torch.manual_seed(42)
B = 2 # some toy numbers here
T = 3
C = 4
x = torch.randn(B, T, C, {F64}, requires_grad=True)
w = torch.randn(C, {F64}, requires_grad=True)
b = torch.randn(C, {F64}, requires_grad=True)
""", """\
out, cache = LayerNorm.forward(x, w, b)

dout = torch.randn(B, T, C, dtype=torch.float64)
fakeloss = (out * dout).sum()
""", sink="fakeloss", wrt=("x", "w", "b", "out"), values=("dout",))

# -- deliberate: an operation without a rule (issue 18, "An opaque step is never hidden")
case("torch_eigh_partial", "issue 18 (deliberate: torch.linalg.eigh has no rule)", "torch",
     TORCH + f"""torch.manual_seed(0)
X = torch.randn(4, 3, {F64}, requires_grad=True)
Y = torch.randn(5, 3, {F64}, requires_grad=True)
W = torch.randn(3, 2, {F64}, requires_grad=True)
""", """\
A = X @ X.T
evals, evecs = torch.linalg.eigh(A)
loss = evals.sum() + (Y @ W).pow(2).mean()
""", wrt=("Y", "W"), opaque="eigh", crossing=("X", "A"))

# -- regressions of issue 18: PyTorch read with NumPy's meaning
case("torch_transpose_0_1", "issue 18 (S = q @ k.transpose(0, 1) is a transpose)", "torch",
     TORCH + f"""torch.manual_seed(0)
q = torch.randn(4, 3, {F64}, requires_grad=True)
k = torch.randn(5, 3, {F64}, requires_grad=True)
""", "S = q @ k.transpose(0, 1)\nloss = torch.tanh(S).sum()\n", wrt=("q", "k", "S"))

case("torch_softmax_implicit_dim_3d", "issue 18 (F.softmax(x) without dim on 3-d input)", "torch",
     TORCH + f"""torch.manual_seed(0)
x = torch.randn(3, 4, 5, {F64}, requires_grad=True)
w = torch.randn(3, 4, 5, {F64})
""", "P = F.softmax(x)\nloss = (P * w).sum()\n", wrt=("x", "P"))


# ============================================================================ JAX

JAX = "import math\nimport jax\nimport jax.numpy as jnp\nfrom jax import jit, grad, vmap, random\n"

# -- jax-ml/jax examples/mnist_classifier_fromscratch.py: predict, loss (logsumexp), jit
MNIST_FROMSCRATCH = """\
import numpy.random as npr

import jax
from jax import jit, grad
from jax.scipy.special import logsumexp
import jax.numpy as np

def init_random_params(scale, layer_sizes, rng=npr.RandomState(0)):
  return [(scale * rng.randn(m, n), scale * rng.randn(n))
          for m, n, in zip(layer_sizes[:-1], layer_sizes[1:])]

def predict(params, inputs):
  activations = inputs
  for w, b in params[:-1]:
    outputs = np.dot(activations, w) + b
    activations = np.tanh(outputs)

  final_w, final_b = params[-1]
  logits = np.dot(activations, final_w) + final_b
  return logits - logsumexp(logits, axis=1, keepdims=True)

def loss(params, batch):
  inputs, targets = batch
  preds = predict(params, inputs)
  return -np.mean(preds * targets)

layer_sizes = [6, 5, 4, 3]
param_scale = 0.1
params = init_random_params(param_scale, layer_sizes)
rs = npr.RandomState(1)
batch = (rs.randn(8, 6), np.eye(3)[rs.randint(0, 3, 8)])
"""
PARAMS3 = ("params[0][0]", "params[0][1]", "params[1][0]", "params[1][1]", "params[2][0]",
           "params[2][1]")
case("jax_mnist_fromscratch", "jax-ml/jax examples/mnist_classifier_fromscratch.py", "jax",
     MNIST_FROMSCRATCH, "value = loss(params, batch)\n", sink="value", wrt=PARAMS3)

case("jax_mnist_fromscratch_jit", "jax-ml/jax examples/mnist_classifier_fromscratch.py", "jax",
     MNIST_FROMSCRATCH, "loss_jit = jit(loss)\nvalue = loss_jit(params, batch)\n", sink="value",
     wrt=PARAMS3)

# -- jax-ml/jax docs/notebooks/Neural_Network_and_Data_Loading.md: vmap-ed predict, relu
case("jax_nn_data_loading_vmap", "jax-ml/jax docs/notebooks/Neural_Network_and_Data_Loading.md",
     "jax", JAX + """from jax.scipy.special import logsumexp

# A helper function to randomly initialize weights and biases
# for a dense neural network layer
def random_layer_params(m, n, key, scale=1e-2):
  w_key, b_key = random.split(key)
  return scale * random.normal(w_key, (n, m)), scale * random.normal(b_key, (n,))

# Initialize all layers for a fully-connected neural network with sizes "sizes"
def init_network_params(sizes, key):
  keys = random.split(key, len(sizes))
  return [random_layer_params(m, n, k) for m, n, k in zip(sizes[:-1], sizes[1:], keys)]

layer_sizes = [6, 5, 3]
params = init_network_params(layer_sizes, random.key(0))

def relu(x):
  return jnp.maximum(0, x)

def predict(params, image):
  # per-example predictions
  activations = image
  for w, b in params[:-1]:
    outputs = jnp.dot(w, activations) + b
    activations = relu(outputs)

  final_w, final_b = params[-1]
  logits = jnp.dot(final_w, activations) + final_b
  return logits - logsumexp(logits)

# Make a batched version of the `predict` function
batched_predict = vmap(predict, in_axes=(None, 0))

def one_hot(x, k, dtype=jnp.float64):
  \"\"\"Create a one-hot encoding of x of size k.\"\"\"
  return jnp.array(x[:, None] == jnp.arange(k), dtype)

def loss(params, images, targets):
  preds = batched_predict(params, images)
  return -jnp.mean(preds * targets)

images = random.normal(random.key(1), (4, 6))
targets = one_hot(jnp.array([0, 2, 1, 2]), 3)
""", "value = loss(params, images, targets)\n", sink="value",
     wrt=("params[0][0]", "params[0][1]", "params[1][0]", "params[1][1]"))

# -- jax-ml/jax README.md: predict / least-squares loss, jit
case("jax_readme_least_squares_jit", "jax-ml/jax README.md", "jax", JAX + """
def predict(params, inputs):
  for W, b in params:
    outputs = jnp.dot(inputs, W) + b
    inputs = jnp.tanh(outputs)  # inputs to the next layer
  return outputs                # no activation on last layer

def loss(params, inputs, targets):
  preds = predict(params, inputs)
  return jnp.sum((preds - targets)**2)

k1, k2, k3, k4, k5, k6 = random.split(random.key(0), 6)
params = [(random.normal(k1, (4, 5)), random.normal(k2, (5,))),
          (random.normal(k3, (5, 2)), random.normal(k4, (2,)))]
inputs = random.normal(k5, (6, 4))
targets = random.normal(k6, (6, 2))
""", "value = jit(loss)(params, inputs, targets)\n", sink="value",
     wrt=("params[0][0]", "params[0][1]", "params[1][0]", "params[1][1]"))

# -- jax-ml/jax docs/notebooks/autodiff_cookbook.md: logistic regression
case("jax_autodiff_cookbook_logistic", "jax-ml/jax docs/notebooks/autodiff_cookbook.md", "jax",
     JAX + """
key = random.key(0)

def sigmoid(x):
    return 0.5 * (jnp.tanh(x / 2) + 1)

# Outputs probability of a label being true.
def predict(W, b, inputs):
    return sigmoid(jnp.dot(inputs, W) + b)

# Build a toy dataset.
inputs = jnp.array([[0.52, 1.12,  0.77],
                    [0.88, -1.08, 0.15],
                    [0.52, 0.06, -1.30],
                    [0.74, -2.49, 1.39]])
targets = jnp.array([True, True, False, True])

# Training loss is the negative log-likelihood of the training examples.
def loss(W, b):
    preds = predict(W, b, inputs)
    label_probs = preds * targets + (1 - preds) * (1 - targets)
    return -jnp.sum(jnp.log(label_probs))

# Initialize random model coefficients
key, W_key, b_key = random.split(key, 3)
W = random.normal(W_key, (3,))
b = random.normal(b_key, ())
""", "value = loss(W, b)\n", sink="value", wrt=("W", "b"))

# -- phlippe/uvadlc_notebooks docs/tutorial_notebooks/JAX/tutorial6/Transformers_and_MHAttention.ipynb
#    scaled_dot_product, flax-free (its nn.softmax is jax.nn.softmax)
case("jax_uvadlc_scaled_dot_product",
     "phlippe/uvadlc_notebooks docs/tutorial_notebooks/JAX/tutorial6/Transformers_and_MHAttention.ipynb",
     "jax", JAX + """
def scaled_dot_product(q, k, v, mask=None):
    d_k = q.shape[-1]
    attn_logits = jnp.matmul(q, jnp.swapaxes(k, -2, -1))
    attn_logits = attn_logits / math.sqrt(d_k)
    if mask is not None:
        attn_logits = jnp.where(mask == 0, -9e15, attn_logits)
    attention = jax.nn.softmax(attn_logits, axis=-1)
    values = jnp.matmul(attention, v)
    return values, attention

seq_len, d_k = 4, 3
main_rng, rand1, rand2 = random.split(random.key(42), 3)
qkv = random.normal(rand1, (3, 2, seq_len, d_k))
q, k, v = qkv[0], qkv[1], qkv[2]
mask = jnp.tril(jnp.ones((seq_len, seq_len)))
w = random.normal(rand2, (2, seq_len, d_k))
""", "values, attention = scaled_dot_product(q, k, v, mask)\nout = jnp.sum(values * w)\n",
     sink="out", wrt=("q", "k", "v", "values"), values=("attention",))

# -- regression of issue 18: a right backward at a kink (relu's own subgradient)
case("jax_relu_zero_row", "issue 18 (jax.nn.relu(X @ W) with a zero row of X)", "jax",
     JAX + """k1, k2, k3 = random.split(random.key(0), 3)
X = random.normal(k1, (4, 3)).at[1].set(0.0)
W = random.normal(k2, (3, 5))
C = random.normal(k3, (4, 5))
""", "Z = jax.nn.relu(X @ W)\nL = jnp.sum(Z * C)\n", sink="L", wrt=("X", "W", "Z"))

case("jax_eigh_partial", "issue 18 (deliberate: jnp.linalg.eigh has no rule)", "jax",
     JAX + """k1, k2, k3 = random.split(random.key(0), 3)
X = random.normal(k1, (4, 3))
Y = random.normal(k2, (5, 3))
W = random.normal(k3, (3, 2))
""", "A = X @ X.T\nevals = jnp.linalg.eigh(A)[0]\nL = jnp.sum(evals) + jnp.sum((Y @ W) ** 2)\n",
     sink="L", wrt=("Y", "W"), opaque="eigh", crossing=("X", "A"))


# ============================================================================ NumPy
# Each reference is the same forward written by hand in torch (float64).

import numpy as np  # noqa: E402
import torch  # noqa: E402  (the references' framework)

NP = "import numpy as np\n"


def _case_study(t, ns):
    X, W, b, W2, b2 = t["X"], t["W"], t["b"], t["W2"], t["b2"]
    pre = X @ W + b
    hidden_layer = torch.maximum(torch.zeros_like(pre), pre)
    scores = hidden_layer @ W2 + b2
    exp_scores = torch.exp(scores)
    probs = exp_scores / exp_scores.sum(1, keepdim=True)
    n = ns["num_examples"]
    correct_logprobs = -torch.log(probs[torch.arange(n), t["y"].long()])
    data_loss = correct_logprobs.sum() / n
    reg_loss = 0.5 * ns["reg"] * (W * W).sum() + 0.5 * ns["reg"] * (W2 * W2).sum()
    return dict(hidden_layer=hidden_layer, scores=scores, exp_scores=exp_scores, probs=probs,
                loss=data_loss + reg_loss)


# -- cs231n/cs231n.github.io neural-networks-case-study.md: the two-layer net's loss
case("cs231n_case_study_two_layer", "cs231n/cs231n.github.io neural-networks-case-study.md",
     "numpy", NP + """np.random.seed(0)
N = 10 # number of points per class
D = 2 # dimensionality
K = 3 # number of classes
X = np.zeros((N*K,D)) # data matrix (each row = single example)
y = np.zeros(N*K, dtype='uint8') # class labels
for j in range(K):
  ix = range(N*j,N*(j+1))
  radius = np.linspace(0.0,1,N) # radius
  t = np.linspace(j*4,(j+1)*4,N) + np.random.randn(N)*0.2 # theta
  X[ix] = np.c_[radius*np.sin(t), radius*np.cos(t)]
  y[ix] = j
h = 20 # size of hidden layer
W = 0.01 * np.random.randn(D,h)
b = np.zeros((1,h))
W2 = 0.01 * np.random.randn(h,K)
b2 = np.zeros((1,K))
reg = 1e-3 # regularization strength
num_examples = X.shape[0]
""", """\
# evaluate class scores, [N x K]
hidden_layer = np.maximum(0, np.dot(X, W) + b) # note, ReLU activation
scores = np.dot(hidden_layer, W2) + b2

# compute the class probabilities
exp_scores = np.exp(scores)
probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True) # [N x K]

# compute the loss: average cross-entropy loss and regularization
correct_logprobs = -np.log(probs[range(num_examples),y])
data_loss = np.sum(correct_logprobs)/num_examples
reg_loss = 0.5*reg*np.sum(W*W) + 0.5*reg*np.sum(W2*W2)
loss = data_loss + reg_loss
""", wrt=("W", "b", "W2", "b2", "hidden_layer", "scores", "exp_scores", "probs"),
     reference=_case_study)


def _softmax_vectorized(t, ns):
    W, X, y = t["W"], t["X"], t["y"].long()
    f = X @ W
    f = f - f.max()
    f_correct = f[torch.arange(X.shape[0]), y]
    loss = -torch.mean(torch.log(torch.exp(f_correct) / torch.exp(f).sum(1)))
    return dict(loss=loss + 0.5 * ns["reg"] * (W * W).sum())


SOFTMAX_VECTORIZED = '''
def softmax_loss_vectorized(W, X, y, reg):
  """
  Softmax loss function, vectorized version.

  Inputs and outputs are the same as softmax_loss_naive.
  """
  # Initialize the loss and gradient to zero.
  loss = 0.0
  dW = np.zeros_like(W)

  num_classes = W.shape[1]
  num_train   = X.shape[0]

  f = np.dot(X,W)
  max_f = np.max(f)
  f -= max_f
  #take the column-wise max and remove it for numerical stability

  f_correct = f[np.arange(num_train), y]
  loss = - np.mean( np.log ( np.exp(f_correct) / (np.sum(np.exp(f), axis=1) ) ) )

  #Gradient:
  # dw_j = 1 / num_train * Sum_i[ x_i * (p(y_i = j) -index(y_i = j))]
  p = np.exp(f) / np.sum(np.exp(f), axis = 1).reshape(f.shape[0],1)
  index = np.zeros(p.shape)
  index[np.arange(num_train), y] = 1
  dW = np.dot( X.T, (p - index))

  dW /= num_train

  #Regularization
  loss += 0.5 * reg * np.sum(W * W)
  dW   += reg * W

  return loss, dW

np.random.seed(1)
W = np.random.randn(5, 4) * 0.1
X = np.random.randn(7, 5)
y = np.random.randint(4, size=7)
reg = 0.05
'''
# -- kingtaurus/cs231n assignment1/cs231n/classifiers/softmax.py: softmax_loss_vectorized
case("cs231n_softmax_loss_vectorized",
     "kingtaurus/cs231n assignment1/cs231n/classifiers/softmax.py", "numpy",
     NP + SOFTMAX_VECTORIZED, "loss, grad = softmax_loss_vectorized(W, X, y, reg)\n",
     wrt=("W",), reference=_softmax_vectorized, values=("grad",))

LAYERS = '''
def affine_forward(x, w, b):
  N = x.shape[0]
  D = np.prod(x.shape[1:])
  #this should be the same as w.shape[0]
  M = b.shape[0]

  out = np.dot(x.reshape(N,D), w.reshape(D,M)) + b.reshape(-1)
  cache = (x, w, b)
  return out, cache

def relu_forward(x):
  out = np.maximum(0, x)
  cache = x
  return out, cache

def affine_relu_forward(x, w, b):
  """
  Convenience layer that perorms an affine transform followed by a ReLU
  """
  a, fc_cache = affine_forward(x, w, b)
  out, relu_cache = relu_forward(a)
  cache = (fc_cache, relu_cache)
  return out, cache

def batchnorm_forward(x, gamma, beta, bn_param):
  mode = bn_param['mode']
  eps  = bn_param.get('eps', 1e-5)
  momentum = bn_param.get('momentum', 0.9)

  N, D = x.shape
  running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
  running_var  = bn_param.get('running_var', np.ones(D, dtype=x.dtype))

  out, cache, x_hat = None, None, None
  mean = x.mean(axis=0)
  var  = x.var(axis=0)

  if mode == 'train':
    running_mean = momentum * mean + (1 - momentum) * running_mean
    running_var  = momentum * var + (1 - momentum) * running_var
    x_hat = (x - mean) / np.sqrt(var + eps)
    x = gamma * x_hat + beta
  elif mode == 'test':
    x_hat = (x - running_mean / np.sqrt(running_var + eps))
    x = gamma * (x_hat - running_mean) / np.sqrt(running_var + eps) + beta
  else:
    raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

  # Store the updated running means back into bn_param
  bn_param['running_mean'] = running_mean
  bn_param['running_var']  = running_var
  out = x
  cache = (gamma, beta, x_hat, mean, (var+eps))
  return out, cache
'''


def _affine_relu(t, ns):
    x, w, b = t["x"], t["w"], t["b"]
    a = x.reshape(x.shape[0], -1) @ w + b
    out = torch.maximum(torch.zeros_like(a), a)
    return dict(out=out, loss=(out * t["dout"]).sum())


# -- kingtaurus/cs231n assignment2/cs231n/layers.py (+ layer_utils.py): affine_relu_forward
case("cs231n_affine_relu_forward", "kingtaurus/cs231n assignment2/cs231n/layers.py", "numpy",
     NP + LAYERS + """
np.random.seed(231)
x = np.random.randn(4, 2, 3)
w = np.random.randn(6, 5)
b = np.random.randn(5)
dout = np.random.randn(4, 5)
""", "out, cache = affine_relu_forward(x, w, b)\nloss = np.sum(out * dout)\n",
     wrt=("x", "w", "b", "out"), reference=_affine_relu)


def _batchnorm(t, ns):
    x, gamma, beta = t["x"], t["gamma"], t["beta"]
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    x_hat = (x - mean) / torch.sqrt(var + 1e-5)
    out = gamma * x_hat + beta
    return dict(out=out, loss=(out * t["dout"]).sum())


# -- kingtaurus/cs231n assignment2/cs231n/layers.py: batchnorm_forward (training mode)
case("cs231n_batchnorm_forward", "kingtaurus/cs231n assignment2/cs231n/layers.py", "numpy",
     NP + LAYERS + """
np.random.seed(231)
N, D = 6, 4
x = 5 * np.random.randn(N, D) + 12
gamma = np.random.randn(D)
beta = np.random.randn(D)
dout = np.random.randn(N, D)
bn_param = {'mode': 'train'}
""", "out, cache = batchnorm_forward(x, gamma, beta, bn_param)\nloss = np.sum(out * dout)\n",
     wrt=("x", "gamma", "beta", "out"), reference=_batchnorm,
     values=("bn_param['running_mean']", "bn_param['running_var']"))

RNN_LAYERS = '''
def rnn_step_forward(x, prev_h, Wx, Wh, b):
  next_h, cache = None, None
  next_h = np.tanh(np.dot(prev_h, Wh) + np.dot(x, Wx) + b)
  cache = Wh, prev_h, Wx, x, b, next_h
  return next_h, cache

def rnn_forward(x, h0, Wx, Wh, b):
  h, cache = None, None
  N = x.shape[0]
  T = x.shape[1]
  H = Wh.shape[0]

  h = np.zeros((N,T,H))
  #so, need to grab T vectors and RNN it up
  x = x.transpose((1,0,2))
  h_i = h0
  for idx, x_i in enumerate(x):
    #def rnn_step_forward(x, prev_h, Wx, Wh, b)
    h_i, _     = rnn_step_forward(x_i, h_i, Wx, Wh, b)
    h[:,idx,:] = h_i
  #Wh, prev_h, Wx, x, b, next_h

  cache = Wh, h0, Wx, x, b, h
  return h, cache

def sigmoid(x):
  """
  A numerically stable version of the logistic sigmoid function.
  """
  pos_mask = (x >= 0)
  neg_mask = (x < 0)
  z = np.zeros_like(x)
  z[pos_mask] = np.exp(-x[pos_mask])
  z[neg_mask] = np.exp(x[neg_mask])
  top = np.ones_like(x)
  top[neg_mask] = z[neg_mask]
  return top / (1 + z)

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
  next_h, next_c, cache = None, None, None
  N, H = prev_h.shape
  a = np.dot(x, Wx) + np.dot(prev_h, Wh) + b
  i = sigmoid(a[:, :H])
  f = sigmoid(a[:, H:2*H])
  o = sigmoid(a[:, 2*H:3*H])
  g = np.tanh(a[:, 3*H:])
  next_c = f * prev_c + i * g
  next_h = o * np.tanh(next_c)
  cache = (x, prev_h, prev_c, Wx, Wh, a, i, f, o, g, next_c)
  return next_h, next_c, cache

np.random.seed(231)
N, D, H, T = 3, 4, 5, 3
'''


def _rnn_step(t, ns):
    next_h = torch.tanh(t["prev_h"] @ t["Wh"] + t["x"] @ t["Wx"] + t["b"])
    return dict(next_h=next_h, loss=(next_h * t["dnext_h"]).sum())


# -- kingtaurus/cs231n assignment3/cs231n/rnn_layers.py: rnn_step_forward
case("cs231n_rnn_step_forward", "kingtaurus/cs231n assignment3/cs231n/rnn_layers.py", "numpy",
     NP + RNN_LAYERS + """x = np.random.randn(N, D)
prev_h = np.random.randn(N, H)
Wx = np.random.randn(D, H)
Wh = np.random.randn(H, H)
b = np.random.randn(H)
dnext_h = np.random.randn(N, H)
""", "next_h, cache = rnn_step_forward(x, prev_h, Wx, Wh, b)\nloss = np.sum(next_h * dnext_h)\n",
     wrt=("x", "prev_h", "Wx", "Wh", "b", "next_h"), reference=_rnn_step)


def _rnn_forward(t, ns):
    h_i, hs = t["h0"], []
    for i in range(t["x"].shape[1]):
        h_i = torch.tanh(h_i @ t["Wh"] + t["x"][:, i, :] @ t["Wx"] + t["b"])
        hs.append(h_i)
    h = torch.stack(hs, 1)
    return dict(h=h, loss=(h * t["dh"]).sum())


# -- kingtaurus/cs231n assignment3/cs231n/rnn_layers.py: rnn_forward (h[:, idx, :] = h_i)
case("cs231n_rnn_forward_setitem", "kingtaurus/cs231n assignment3/cs231n/rnn_layers.py", "numpy",
     NP + RNN_LAYERS + """x = np.random.randn(N, T, D)
h0 = np.random.randn(N, H)
Wx = np.random.randn(D, H)
Wh = np.random.randn(H, H)
b = np.random.randn(H)
dh = np.random.randn(N, T, H)
""", "h, cache = rnn_forward(x, h0, Wx, Wh, b)\nloss = np.sum(h * dh)\n",
     wrt=("x", "h0", "Wx", "Wh", "b", "h"), reference=_rnn_forward)


def _lstm_step(t, ns):
    H = t["prev_h"].shape[1]
    a = t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"]
    i, f, o = (torch.sigmoid(a[:, k * H:(k + 1) * H]) for k in range(3))
    g = torch.tanh(a[:, 3 * H:])
    next_c = f * t["prev_c"] + i * g
    next_h = o * torch.tanh(next_c)
    return dict(next_h=next_h, next_c=next_c,
                loss=(next_h * t["dnext_h"]).sum() + (next_c * t["dnext_c"]).sum())


# -- kingtaurus/cs231n assignment3/cs231n/rnn_layers.py: lstm_step_forward (slices, its sigmoid)
case("cs231n_lstm_step_forward", "kingtaurus/cs231n assignment3/cs231n/rnn_layers.py", "numpy",
     NP + RNN_LAYERS + """x = np.random.randn(N, D)
prev_h = np.random.randn(N, H)
prev_c = np.random.randn(N, H)
Wx = np.random.randn(D, 4 * H)
Wh = np.random.randn(H, 4 * H)
b = np.random.randn(4 * H)
dnext_h = np.random.randn(N, H)
dnext_c = np.random.randn(N, H)
""", """\
next_h, next_c, cache = lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
loss = np.sum(next_h * dnext_h) + np.sum(next_c * dnext_c)
""", wrt=("x", "prev_h", "prev_c", "Wx", "Wh", "b", "next_h", "next_c"), reference=_lstm_step)


def _adaline(t, ns):
    w_ = t["w_"]
    net_input = t["X"] @ w_[1:] + w_[0]
    errors = t["y"] - net_input
    return dict(net_input=net_input, errors=errors, cost=(errors ** 2).sum() / 2.0)


# -- rasbt/python-machine-learning-book code/ch02/ch02.ipynb: AdalineGD's least-squares cost
case("adaline_least_squares", "rasbt/python-machine-learning-book code/ch02/ch02.ipynb", "numpy",
     NP + """rgen = np.random.RandomState(1)
X = rgen.normal(size=(8, 2))
y = np.where(rgen.normal(size=8) > 0, 1.0, -1.0)
w_ = rgen.normal(loc=0.0, scale=0.01, size=1 + X.shape[1])
""", """\
net_input = np.dot(X, w_[1:]) + w_[0]
output = net_input
errors = (y - output)
cost = (errors**2).sum() / 2.0
""", sink="cost", wrt=("w_", "net_input", "errors"), reference=_adaline)


def _logistic(t, ns):
    w_, X, y = t["w_"], t["X"], t["y"]
    net_input = X @ w_[1:] + w_[0]
    output = 1. / (1. + torch.exp(-torch.clip(net_input, -250, 250)))
    cost = -y @ torch.log(output) - ((1 - y) @ torch.log(1 - output))
    return dict(net_input=net_input, output=output, cost=cost)


# -- rasbt/python-machine-learning-book-2nd-edition code/ch03/ch03.ipynb: LogisticRegressionGD
case("logistic_regression_gd",
     "rasbt/python-machine-learning-book-2nd-edition code/ch03/ch03.ipynb", "numpy",
     NP + """
def activation(z):
    \"\"\"Compute logistic sigmoid activation\"\"\"
    return 1. / (1. + np.exp(-np.clip(z, -250, 250)))

rgen = np.random.RandomState(1)
X = rgen.normal(size=(8, 2))
y = (rgen.normal(size=8) > 0).astype(float)
w_ = rgen.normal(loc=0.0, scale=0.5, size=1 + X.shape[1])
""", """\
net_input = np.dot(X, w_[1:]) + w_[0]
output = activation(net_input)
errors = (y - output)
cost = -y.dot(np.log(output)) - ((1 - y).dot(np.log(1 - output)))
""", sink="cost", wrt=("w_", "net_input", "output"), reference=_logistic)


def _stack_slice(t, ns):
    X, W, V = t["X"], t["W"], t["V"]
    S = torch.stack([X @ W, X @ V])
    T = S[:, :2, :3]
    return dict(S=S, T=T, L=torch.tanh(T).sum())


case("numpy_stack_and_slice", "issue 18 (np.stack and X[:2, :3] became stop leaves)", "numpy",
     NP + """rng = np.random.default_rng(0)
X = rng.standard_normal((4, 3))
W = rng.standard_normal((3, 5))
V = rng.standard_normal((3, 5))
""", "S = np.stack([X @ W, X @ V])\nT = S[:, :2, :3]\nL = np.sum(np.tanh(T))\n", sink="L",
     wrt=("X", "W", "V", "S", "T"), reference=_stack_slice)


def _svd_partial(t, ns):
    return dict(L=torch.linalg.svdvals(t["A"]).sum() + ((t["X"] @ t["W"]) ** 2).sum())


case("numpy_svd_partial", "issue 18 (deliberate: np.linalg.svd has no rule)", "numpy",
     NP + """rng = np.random.default_rng(0)
A = rng.standard_normal((4, 3))
X = rng.standard_normal((5, 3))
W = rng.standard_normal((3, 2))
""", "U, s, Vt = np.linalg.svd(A)\nL = s.sum() + np.sum((X @ W) ** 2)\n", sink="L",
     wrt=("X", "W"), reference=_svd_partial, opaque="svd", crossing=("A",))


# -- regressions of issue 18: it reads values after the cell changed them
def _tanh_xw(t, ns):
    H = t["X"] @ t["W"]
    return dict(H=H, Z=torch.tanh(H))


XW = NP + """rng = np.random.default_rng(0)
X = rng.standard_normal((4, 3))
W = rng.standard_normal((3, 5))
"""
case("numpy_setitem_after_use", "issue 18 (W[:] = 0 after use)", "numpy", XW,
     "H = X @ W\nZ = np.tanh(H)\nW[:] = 0\n", sink="Z", cotangent=True,
     wrt=("X", "H"), reference=_tanh_xw)
case("numpy_fill_after_use", "issue 18 (W.fill(0) after use)", "numpy", XW,
     "H = X @ W\nZ = np.tanh(H)\nW.fill(0)\n", sink="Z", cotangent=True,
     wrt=("X", "H"), reference=_tanh_xw)
case("numpy_out_after_use", "issue 18 (out=W after use)", "numpy", XW,
     "H = X @ W\nZ = np.tanh(H)\nnp.multiply(W, 0, out=W)\n", sink="Z", cotangent=True,
     wrt=("X", "H"), reference=_tanh_xw)


def _alias(t, ns):
    # X is the array as the cell received it (the cell doubles it in place through V)
    V = t["X"] * 2
    H = V @ t["W"]
    return dict(H=H, L=torch.tanh(H).sum())


case("numpy_alias_inplace", "issue 18 (an alias V = X; V *= 2)", "numpy", XW,
     "V = X\nV *= 2\nH = X @ W\nL = np.sum(np.tanh(H))\n", sink="L", wrt=("X", "W", "H"),
     reference=_alias)


def _constant_rebound(t, ns):
    H = 2.0 * t["X"] @ t["W"]
    return dict(H=H, L=torch.tanh(H).sum())


case("numpy_constant_rebound", "issue 18 (a constant rebound later in the cell)", "numpy", XW,
     "c = 2.0\nH = c * X @ W\nc = 5.0\nL = np.sum(np.tanh(H))\n", sink="L",
     wrt=("X", "W", "H"), reference=_constant_rebound)


def _random_draw(t, ns):
    state = np.random.get_state()
    np.random.seed(7)                     # the setup's seed: the draw the run made
    noise = torch.tensor(np.random.rand(3, 5))
    np.random.set_state(state)
    H = t["X"] @ (t["W"] * noise)
    return dict(H=H, L=torch.tanh(H).sum())


case("numpy_random_draw_once", "issue 18 (np.random.rand(...) in an expression is not re-drawn)",
     "numpy", XW + "np.random.seed(7)\n", "H = X @ (W * np.random.rand(3, 5))\nL = np.sum(np.tanh(H))\n",
     sink="L", wrt=("X", "W", "H"), reference=_random_draw, values=("np.random.rand()",))


def _side_effects(t, ns):
    H = t["X"] @ t["W"]
    return dict(H=H, L=torch.tanh(H).sum())


SIDE_EFFECTS_SETUP = XW + """import os, tempfile
LOG = os.path.join(tempfile.gettempdir(), f"einsum_magic_passes_{os.getpid()}.log")
open(LOG, "w").close()
"""
SIDE_EFFECTS_CELL = """\
print("forward pass")
os.system(f"echo ran >> {LOG}")
H = X @ W
L = np.sum(np.tanh(H))
"""
case("numpy_side_effects_once", "issue 18 (os.system / print in a cell run once)", "numpy",
     SIDE_EFFECTS_SETUP, SIDE_EFFECTS_CELL, sink="L", wrt=("X", "W", "H"),
     reference=_side_effects, values=("open(LOG).read().count('ran')",))


# -- regressions: a value the cell turns into a Python number (float(), item(), tolist())
def _float_norm(t, ns):
    scale = torch.sqrt((t["X"] ** 2).sum())     # the math: the norm depends on X
    return dict(L=torch.tanh(t["X"] @ t["W"] / scale).sum())


case("numpy_float_norm", "issue 18 (math.sqrt(s) turns s into a float: what follows is cut)",
     "numpy", XW, "import math\nscale = math.sqrt((X ** 2).sum())\n"
     "L = np.sum(np.tanh(X @ W / scale))\nlogged = float(L)\n", sink="L",
     wrt=("W",), reference=_float_norm, opaque="float()", crossing=("X",))


def _tanh_sum(t, ns):
    H = t["X"] @ t["W"]
    return dict(H=H, L=torch.tanh(H).sum())


case("numpy_logged_loss", "issue 18 (float(L) logs the loss, which stays the sink)", "numpy",
     XW, "H = X @ W\nL = np.sum(np.tanh(H))\nlogged = float(L)\nprint(f'{L.item():.3f}')\n",
     sink="L", wrt=("X", "W", "H"), reference=_tanh_sum)

case("torch_item_constant", "issue 18 (c = Z.abs().max().item() is no sink: a constant)",
     "torch", TORCH + f"""torch.manual_seed(0)
X = torch.randn(4, 3, {F64}, requires_grad=True)
W = torch.randn(3, 2, {F64}, requires_grad=True)
""", "Z = X @ W\nc = Z.abs().max().item()\nloss = Z.sum() * c\n", wrt=("X", "W", "Z"))

case("torch_item_logged", "issue 18 (print(loss.item()) logs the loss, which stays the sink)",
     "torch", TORCH + f"""torch.manual_seed(0)
X = torch.randn(4, 3, {F64}, requires_grad=True)
W = torch.randn(3, 2, {F64}, requires_grad=True)
""", "Z = X @ W\nloss = (Z ** 2).mean()\nprint('loss', round(loss.item(), 3))\n",
     wrt=("X", "W", "Z"))

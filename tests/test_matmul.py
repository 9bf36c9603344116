"""A Linear layer's products by ATen or oneDNN (reglab.matmul) against float64 and F.linear."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab import matmul
from reglab.errors import ReglabError
from reglab.lab.build import build
from reglab.lab.recipe import Recipe
from reglab.lab.run import train_recipe
from reglab.lab.stack import run_stacked
from reglab.models import mlp
from reglab.train.loop import Trainer
from reglab.train.threads import step_flops

onednn = pytest.mark.skipif(not matmul.onednn_available(), reason="this PyTorch build has no oneDNN")

SHAPES = [(100, 256, 256), (100, 128, 256), (64, 512, 64)]  # (batch, in, out): each at least MIN_WORK


def _float64_reference(x, w, b, g):
    """y = x Wᵀ + b and the gradients of Σ g ⊙ y, in float64."""
    x, w, b = (t.double().requires_grad_() for t in (x, w, b))
    y = F.linear(x, w, b)
    (y * g.double()).sum().backward()
    return y.detach(), x.grad, w.grad, b.grad


def _close(a, ref, tol=2e-6):
    """Within float32 rounding of the reference's own scale."""
    return (a.double() - ref).abs().max().item() <= tol * ref.abs().max().item()


@onednn
@pytest.mark.parametrize("shape", SHAPES)
def test_onednn_products_and_gradients_match_float64(shape):
    batch, n_in, n_out = shape
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(batch, n_in, generator=g), torch.randn(n_out, n_in, generator=g)
    b = torch.randn(n_out, generator=g)
    grad_out = torch.randn(batch, n_out, generator=g)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    assert matmul.onednn_fits(xs, ws, bs)
    y = matmul.linear(xs, ws, bs, "onednn")
    (y * grad_out).sum().backward()
    ref_y, ref_x, ref_w, ref_b = _float64_reference(x, w, b, grad_out)
    assert _close(y, ref_y) and _close(xs.grad, ref_x) and _close(ws.grad, ref_w) and _close(bs.grad, ref_b)
    assert ws.grad.is_contiguous()  # the weight's gradient in the weight's own layout
    assert "OneDNN" in type(y.grad_fn).__name__  # made by oneDNN, not by F.linear
    xs.grad = None
    matmul.linear(xs, ws, bs, "onednn").sum().backward()  # a sum's gradient arrives expanded (stride 0)
    assert _close(xs.grad, _float64_reference(x, w, b, torch.ones_like(grad_out))[1])


@onednn
def test_stacked_copies_products_and_gradients_match_float64_copy_by_copy():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(3, 100, 256, generator=g), torch.randn(3, 256, 128, generator=g)  # w: (S, in, out)
    b, grad_out = torch.randn(3, 1, 128, generator=g), torch.randn(3, 100, 128, generator=g)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    y = matmul.stacked_product(xs, ws, bs)
    assert "OneDNN" in type(y.grad_fn).__name__
    (y * grad_out).sum().backward()
    xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
    yd = torch.baddbmm(bd, xd, wd)
    (yd * grad_out.double()).sum().backward()
    assert _close(y, yd.detach()) and _close(xs.grad, xd.grad) and _close(ws.grad, wd.grad) and _close(bs.grad, bd.grad)
    assert ws.grad.is_contiguous()
    for s in range(3):  # each copy's product is the one its own Linear makes, to rounding
        assert _close(y[s].detach(), matmul.onednn_linear(x[s], w[s].t(), b[s, 0]).double())


@onednn
def test_onednn_products_are_differentiable_twice():
    """A Hessian-vector product (what sharpness measures take) through a oneDNN layer and a
    nonlinearity, against the same in float64."""
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(100, 256, generator=g), torch.randn(256, 256, generator=g) / 16
    v = torch.randn(256, 256, generator=g)

    def hvp(w, x, v, kernel):
        w = w.clone().requires_grad_()
        loss = torch.tanh(matmul.linear(x, w, None, kernel)).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, w, create_graph=True)
        (hv,) = torch.autograd.grad((grad * v).sum(), w)
        return hv

    ref = hvp(w.double(), x.double(), v.double(), "aten")
    assert _close(hvp(w, x, v, "onednn"), ref, tol=1e-5)
    wt = w.t().contiguous().expand(2, -1, -1).clone().requires_grad_()  # two stacked copies, (S, in, out)
    loss = torch.tanh(matmul.stacked_product(x.expand(2, -1, -1), wt, torch.zeros(2, 1, 256))).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, wt, create_graph=True)
    (hv,) = torch.autograd.grad((grad * v.t()).sum(), wt)
    assert _close(hv[0], ref.t()) and _close(hv[1], ref.t())


def test_what_onednn_does_not_take_is_multiplied_as_f_linear():
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(256, 256, generator=g), torch.randn(256, generator=g)
    x = torch.randn(100, 256, generator=g)
    small = torch.randn(8, 256, generator=g)  # 8·256·256 < MIN_WORK
    cases = [(small, w, b), (x.double(), w.double(), b.double()), (x.unsqueeze(0), w, b)]  # small, float64, 3-d
    for xi, wi, bi in cases:
        assert not matmul.onednn_fits(xi, wi, bi)
        assert torch.equal(matmul.linear(xi, wi, bi, "onednn"), F.linear(xi, wi, bi))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not matmul.onednn_fits(x, w, b)
        out = matmul.linear(x, w, b, "onednn")
        assert out.dtype == torch.bfloat16 and torch.equal(out, F.linear(x, w, b))
    assert torch.equal(matmul.linear(x, w, b, "aten"), F.linear(x, w, b))


def test_the_builders_linear_layer_is_nn_linear_with_aten_by_default():
    torch.manual_seed(0)
    model = mlp(40, 10, 256, 2)
    layers = [m for m in model if isinstance(m, nn.Linear)]
    assert len(layers) == 3 and all(type(m) is matmul.Linear and m.matmul_kernel == "aten" for m in layers)
    reference = nn.Sequential(*[nn.Linear(m.in_features, m.out_features) if isinstance(m, nn.Linear) else m
                                for m in model])  # fmt: skip
    reference.load_state_dict(model.state_dict())
    x = torch.randn(100, 40)
    assert torch.equal(model(x), reference(x))


CPUINFO = "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 2\n"


@pytest.mark.parametrize(
    ("vendor", "family", "capability", "kernel"),
    [
        ("AuthenticAMD", 26, "AVX512", "onednn"),  # Zen 5: MKL's AVX2 kernels, full-width AVX-512 cores
        ("AuthenticAMD", 25, "AVX512", "aten"),  # Zen 4: AVX-512 256 bits at a time; not measured faster
        ("AuthenticAMD", 26, "AVX2", "aten"),  # a PyTorch that does not use AVX-512
        ("GenuineIntel", 6, "AVX512", "aten"),  # MKL's own AVX-512 kernels
    ],
)
def test_auto_picks_onednn_on_zen_5_only(vendor, family, capability, kernel):
    text = CPUINFO.format(vendor=vendor, family=family)
    expected = kernel if matmul.onednn_available() else "aten"
    assert matmul.auto_kernel(text, capability) == expected
    assert matmul.auto_kernel("", capability) == "aten"  # a cpuinfo that says nothing


def test_a_kernel_that_does_not_exist_is_refused_before_training():
    with pytest.raises(ReglabError, match="matmul.*'mkl'"):
        matmul.resolve("mkl")
    with pytest.raises(ReglabError, match="training.matmul"):
        Recipe().updated({"training.matmul": "mkl"})
    data = build(Recipe().updated({"data.train_size": 100})).data
    model = mlp(40, 10)
    with pytest.raises(ReglabError, match="matmul.*'fast'"):
        Trainer(model, data, torch.optim.SGD(model.parameters(), 0.1), epochs=1, batch_size=10, matmul="fast")
    assert matmul.resolve("auto") in ("aten", "onednn") and matmul.resolve("aten") == "aten"
    assert matmul.resolve("auto", "cuda") == "aten" and matmul.resolve("auto", "meta") == "aten"
    with pytest.raises(ReglabError, match="on CPU.*'cuda:1'"):
        matmul.resolve("onednn", "cuda:1")


@onednn
def test_flops_are_counted_alike_whichever_kernel_multiplies():
    torch.manual_seed(0)
    model, x = mlp(40, 10, 256, 2), torch.randn(100, 40)
    aten = step_flops(model, x)
    matmul.set_kernel(model, "onednn")
    assert step_flops(model, x) == aten == 3 * 2 * 100 * (40 * 256 + 256 * 256 + 256 * 10)


def _histories(results):
    return [[{k: r[k] for k in ("train_loss", "train_acc", "valid_loss", "valid_acc")} for r in res.history]
            for res in results]  # fmt: skip


@onednn
def test_a_run_with_onednn_trains_as_with_aten_to_rounding_and_records_its_kernel(tmp_path):
    base = Recipe().updated({"training.epochs": 3, "data.train_size": 800, "model.width": 256})
    onednn_run = train_recipe(base.updated({"training.matmul": "onednn"}))
    aten_run = train_recipe(base.updated({"training.matmul": "aten"}))
    assert onednn_run.summary["matmul"] == "onednn" and aten_run.summary["matmul"] == "aten"
    layers = [m for m in onednn_run.model.modules() if isinstance(m, nn.Linear)]
    assert layers and all(m.matmul_kernel == "onednn" for m in layers)
    for a, b in zip(*_histories([onednn_run, aten_run])):
        for k in a:
            assert abs(a[k] - b[k]) <= 1e-5 * abs(b[k]), k
    assert _histories([onednn_run]) == _histories([train_recipe(base.updated({"training.matmul": "onednn"}))])


@onednn
def test_stacked_copies_with_onednn_train_as_their_separate_runs(tmp_path):
    base = Recipe().updated({"training.epochs": 3, "data.train_size": 800, "training.matmul": "onednn"})
    recipes = [base.updated({"training.seed": s}) for s in range(2)]
    apart = [train_recipe(r) for r in recipes]
    stacked = run_stacked(recipes, [tmp_path / f"seed{s}" for s in range(2)])
    assert all(r.summary["matmul"] == "onednn" for r in stacked)
    for a, b in zip(_histories(apart), _histories(stacked)):
        for ra, rb in zip(a, b):
            for k in ra:
                assert abs(ra[k] - rb[k]) <= 1e-5 * abs(ra[k]), k

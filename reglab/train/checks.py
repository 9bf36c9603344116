"""What the Trainer checks before the first step: the parts it is given, the model against the
data, the optimizer against the model, and each callback's monitored metric against what the
history will record. Each check raises an input error that names the part and says how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from reglab._checks import check_choice
from reglab.data import Data
from reglab.errors import ReglabError, ReglabTypeError
from reglab.train.callbacks import HOOKS, Callback, nearest
from reglab.train.losses import LOSSES

if TYPE_CHECKING:
    from reglab.train.loop import Trainer


def check_parts(model: Any, data: Any, optimizer: Any) -> None:
    for name, value, kind, hint in (
        ("model", model, nn.Module, "a torch.nn.Module"),
        (
            "data",
            data,
            Data,
            "a reglab Data: reglab.load_data(recipe.data, seed), or Data(name, x_train, y_train, x_valid, y_valid, "
            "x_test, y_test, num_classes)",
        ),
        (
            "optimizer",
            optimizer,
            torch.optim.Optimizer,
            "a torch.optim.Optimizer built on the model's parameters (a reglab.optim one too)",
        ),
    ):
        if not isinstance(value, kind):
            raise ReglabTypeError(f"{name} must be {hint}; got {what(value)}")


def loss_fn_for(loss_fn: Any, data: Data) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss: a callable, a name from ``LOSSES`` (checked against the targets), or the task's usual one."""
    if loss_fn is None:
        return F.mse_loss if data.regression else F.cross_entropy
    if isinstance(loss_fn, str):
        fn = LOSSES[check_choice("loss_fn", loss_fn, LOSSES)]
        if (loss_fn == "cross_entropy") == data.regression:
            targets = "real-valued targets (a regression)" if data.regression else "class labels"
            raise ReglabError(
                f"loss_fn = {loss_fn!r} does not fit {targets}: cross_entropy is for class labels, mse, mae and "
                "huber for real-valued targets"
            )
        return fn
    if not callable(loss_fn):
        raise ReglabTypeError(
            f"loss_fn must be a function (output, target) -> loss or a name ({', '.join(LOSSES)}); got {what(loss_fn)}"
        )
    return loss_fn


def callbacks_of(callbacks: Iterable[Any]) -> list[Any]:
    """Callbacks: objects with at least one hook. A torch scheduler passed as one would be
    silently ignored (it has no hooks): say how to wrap it."""
    out = list(callbacks)
    for i, cb in enumerate(out):
        if isinstance(cb, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)):
            raise ReglabTypeError(
                f"callbacks[{i}] is a torch scheduler ({type(cb).__name__}); wrap it as "
                "reglab.train.LRScheduler(scheduler), which steps it once per epoch"
            )
        if not any(callable(getattr(cb, hook, None)) for hook in HOOKS):
            raise ReglabTypeError(
                f"callbacks[{i}] is {what(cb)}, which has none of the hooks a callback has ({', '.join(HOOKS)})"
            )
    return out


def callables(name: str, items: Iterable[Any]) -> list[Any]:
    out = list(items)
    for i, item in enumerate(out):
        if not callable(item):
            raise ReglabTypeError(f"{name}[{i}] must be callable; got {what(item)}")
    return out


def name_of(f: Any) -> str:
    return getattr(f, "__qualname__", None) or type(f).__name__


def what(value: Any) -> str:
    """A short description of a wrong value, for error messages."""
    if isinstance(value, type):
        return f"the class {value.__name__} itself, not an instance"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return repr(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__


def autocast_dtype(dtype: Any) -> torch.dtype | None:
    """``autocast``: None (off) or ``torch.bfloat16`` (float16 would need a gradient scaler to
    train: its gradients underflow)."""
    if dtype is None or dtype == torch.bfloat16:
        return dtype
    raise ReglabTypeError(f"autocast must be None or torch.bfloat16; got {dtype!r}")


def check_model(model: nn.Module, data: Data, outputs: bool) -> None:
    """One training sample through the model (``eval()`` mode, no gradient, mode restored),
    before any step: the model must take the data's inputs and, with the default loss
    (``outputs``), give one logit per class or one value per regression target."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(data.x_train[:1])
    except RuntimeError as e:
        raise ReglabError(
            f"the model does not take the data's inputs (a sample has shape {tuple(data.x_train.shape[1:])}): {e}"
        ) from None
    finally:
        model.train(was_training)
    want = data.num_outputs
    if outputs and (not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != (want,)):
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        needs = f"{want} regression targets" if data.regression else f"{want} classes"
        raise ReglabError(f"the model's output has shape {got} per sample; the data needs ({want},) ({needs})")


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer must step at least one of the model's parameters (one built on another
    model's trains nothing); a subset is fine (the rest frozen)."""
    mine = {id(p) for p in model.parameters()}
    if not any(id(p) in mine for group in optimizer.param_groups for p in group["params"]):
        raise ReglabError(
            "the optimizer holds none of the model's parameters (was it built for another model?): nothing would train"
        )


def check_batch_norm(model: nn.Module, n: int, batch_size: int) -> None:
    """Batch norm on a batch of one sample has variance 0: refuse before the first step."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    sizes = {min(batch_size, n), n % batch_size if n > batch_size else n}
    if 1 in sizes:
        raise ReglabError(
            f"batch norm would see a batch of 1 sample ({n} training samples, batch size {batch_size}): "
            "its variance is 0; choose a batch size that leaves no batch of 1"
        )


def check_monitors(trainer: Trainer) -> None:
    """Before the first step: every callback's ``monitor`` is a key the record holds when that
    callback reads it (the loop's ``trainer.record_keys``, or the declared ``records`` of a
    callback before it in the list), else a ``ValueError`` naming the callback and the key, and
    saying what is recorded or which callback to move."""
    if any(_writes_undeclared(cb) for cb in trainer.callbacks):
        return  # it may add the key: the first epoch's end will tell (``monitored``)
    recorded = list(trainer.record_keys)
    writers = {k: cb for cb in trainer.callbacks for k in getattr(cb, "records", ())}
    for cb in trainer.callbacks:
        monitor = getattr(cb, "monitor", None)
        if isinstance(monitor, str) and monitor not in recorded:
            who = type(cb).__name__
            if monitor in writers:
                writer = type(writers[monitor]).__name__
                raise ReglabError(
                    f"{who} monitors {monitor!r}, which {writer} adds after it: put {writer} before {who} in the "
                    "callbacks"
                )
            keys = [*recorded, *(k for k in writers if k not in recorded)]
            task = (
                " (a regression run records no accuracy)" if monitor.endswith("_acc") and not trainer.classify else ""
            )
            raise ReglabError(
                f"{who} monitors {monitor!r}, which the history will not record{task}; it records "
                f"{', '.join(keys)}{nearest(monitor, keys)}"
            )
        recorded += getattr(cb, "records", ())


def _writes_undeclared(cb: Any) -> bool:
    """Whether ``cb`` has its own ``on_epoch_end`` (it may add to the record) but no ``records``."""
    hook = getattr(type(cb), "on_epoch_end", None)
    return hook is not None and hook is not Callback.on_epoch_end and not hasattr(cb, "records")

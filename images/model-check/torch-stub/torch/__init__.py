"""Stand-in for torch in the model check's environment: importable, never usable.

sacroml imports torch at module level for its PyTorch targets. The gate never loads a PyTorch
model (no safe format carries one's code), so every function here raises; the classes exist so
that ``isinstance(model, torch.nn.Module)`` is False for every model the gate loads.
"""

__version__ = "0.0.0+pds.stub"
STUB = True


class StubUsed(RuntimeError):
    """Raised by every function of the stand-in."""


def _unavailable(*_args, **_kwargs):
    raise StubUsed("PyTorch is not installed in the model check's environment: PyTorch models are not "
                   "attacked by the platform (they go to review)")


from_numpy = no_grad = device = cat = zeros_like = where = save = load = max = _unavailable  # noqa: A001
manual_seed = isfinite = tensor = _unavailable


class Tensor:
    """No tensor is ever made."""


from . import cuda, nn, utils  # noqa: E402

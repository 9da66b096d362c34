"""``torch.nn`` of the stand-in: a Module class no loaded model is an instance of."""

from .. import _unavailable
from . import functional  # noqa: F401


class Module:
    """Never instantiated by the check."""

    def __init__(self, *_args, **_kwargs):
        _unavailable()


class Linear(Module):
    pass

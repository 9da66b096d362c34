"""``torch.utils.data`` of the stand-in: base classes sacroml subclasses, loaders that refuse."""

from .. import _unavailable


class Dataset:
    pass


class TensorDataset(Dataset):
    def __init__(self, *_args, **_kwargs):
        _unavailable()


class DataLoader:
    def __init__(self, *_args, **_kwargs):
        _unavailable()

"""No CUDA in the stand-in."""


def is_available() -> bool:
    return False


def manual_seed_all(*_args, **_kwargs) -> None:
    return None

"""KubeSpawner's pod reflector as it stands once it has loaded a namespace's pods: what the hub's
``PdsKubeSpawner.poll`` reads, without an API server."""

from __future__ import annotations

from contextlib import contextmanager


class PodCache:
    """KubeSpawner's pod reflector as it stands once it has loaded the pods of ``namespace`` (there
    is no API server here): ``pods`` keyed ``namespace/name``, the first load done."""

    def __init__(self, namespace: str, *pods: dict):
        import asyncio

        self.pods = {f"{namespace}/{p['metadata']['name']}": p for p in pods}
        self.first_load_future = asyncio.get_running_loop().create_future()
        self.first_load_future.set_result(None)


@contextmanager
def pods_seen_by(spawner, *pods: dict):
    """``spawner``'s (and every KubeSpawner's: the cache is shared) pod reflector showing ``pods``."""
    key = spawner._get_reflector_key("pods")
    previous = type(spawner).reflectors.get(key)
    type(spawner).reflectors[key] = PodCache(spawner.namespace, *pods)
    try:
        yield
    finally:
        if previous is None:
            type(spawner).reflectors.pop(key, None)
        else:
            type(spawner).reflectors[key] = previous

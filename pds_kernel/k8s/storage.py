"""What a pod the platform creates may write on its node's disk: its ``ephemeral-storage``.

A container with a read-only root filesystem still writes on the node: its emptyDir volumes
(``/tmp``), its log (what it prints: the kubelet keeps it on the node's disk) and whatever a
writable layer would take. The node's disk is shared with every other pod of the node, and an
emptyDir's ``sizeLimit`` alone is only checked when the kubelet measures (a pod over it is evicted
then). So every pod the code builds (workspace pods, Dask workers and schedulers, the gate's
Jobs: rebuild, model check, cohort link) gets an ``ephemeral-storage`` limit, requested as much
(requests = limits, like CPU and memory): the sum of its emptyDirs' sizes and :data:`LOG_MIB` for
its log. An emptyDir without a ``sizeLimit`` is refused (:func:`ephemeral_mib`): deny by default.
The kubelet evicts a pod past its limit; the gate then refuses what the Job was for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidInput

#: room for a container's log (and anything a writable layer would take) beyond its emptyDirs
LOG_MIB = 256
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_BYTES = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
          "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_mib(quantity: str) -> int:
    """A storage quantity (``512Mi``, ``1Gi``, ``2G``, bytes) in MiB, rounded up."""
    match = _QUANTITY.fullmatch(str(quantity))
    if match is None:
        raise InvalidInput(f"{quantity!r} is not a storage quantity such as 512Mi or 1Gi")
    return math.ceil(float(match["number"]) * _BYTES[match["unit"]] / (1 << 20))


def ephemeral_mib(volumes: Iterable[Mapping[str, Any]]) -> int:
    """The ``ephemeral-storage`` (MiB) of a pod with ``volumes``: its emptyDirs' sizes and
    :data:`LOG_MIB`. Raises :class:`InvalidInput` for an emptyDir without a ``sizeLimit``."""
    total = LOG_MIB
    for volume in volumes:
        if "emptyDir" not in volume:
            continue
        size = (volume.get("emptyDir") or {}).get("sizeLimit")
        if not size:
            raise InvalidInput(f"the emptyDir volume {volume.get('name')!r} has no sizeLimit: every pod-local "
                               "folder must be bounded")
        total += quantity_mib(size)
    return total


def with_ephemeral_storage(resources: Mapping[str, Any] | None, volumes: Iterable[Mapping[str, Any]]) -> dict:
    """``resources`` with the ``ephemeral-storage`` limit and request of a pod with ``volumes``."""
    storage = f"{ephemeral_mib(volumes)}Mi"
    resources = dict(resources or {})
    for part in ("limits", "requests"):
        resources[part] = {**(resources.get(part) or {}), "ephemeral-storage": storage}
    return resources

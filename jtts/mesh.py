"""Device mesh and shardings: data parallelism over 'data', ZeRO-3 style FSDP over 'fsdp'.

Batches are split over both axes (every device gets distinct rows); each parameter and
optimizer-state array is split over 'fsdp' along its largest dimension that divides evenly
and is replicated over 'data'. XLA's SPMD partitioner inserts the all-gathers and
reduce-scatters, so the model code carries no sharding annotations.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jtts.config import MeshConfig

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_cfg: MeshConfig, n_devices: int) -> tuple[int, int]:
    """(data, fsdp) sizes with a -1 axis filled by the devices the other leaves."""
    sizes = [mesh_cfg.data, mesh_cfg.fsdp]
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        if n_devices % known:
            raise ValueError(
                f"train.mesh={{data: {mesh_cfg.data}, fsdp: {mesh_cfg.fsdp}}} does not divide "
                f"the {n_devices} devices"
            )
        sizes[sizes.index(-1)] = n_devices // known
    if sizes[0] * sizes[1] != n_devices:
        raise ValueError(
            f"train.mesh={{data: {sizes[0]}, fsdp: {sizes[1]}}} needs {sizes[0] * sizes[1]} "
            f"devices, found {n_devices}; set one axis to -1 to use all of them"
        )
    return sizes[0], sizes[1]


def make_mesh(mesh_cfg: MeshConfig, devices: list[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp') mesh; device order follows the physical topology on TPU/GPU."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (row) axis split over every device; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> PartitionSpec:
    """Split the largest dimension divisible by `fsdp` (first such on ties); else replicate."""
    if fsdp == 1:
        return PartitionSpec()
    candidates = [(size, -axis) for axis, size in enumerate(shape) if size % fsdp == 0]
    if not candidates:
        return PartitionSpec()
    axis = -max(candidates)[1]
    return PartitionSpec(*([None] * axis), "fsdp")


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
    """NamedSharding for every leaf (params and optimizer moments alike) by its shape."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp)), abstract_state)


def describe(mesh: Mesh) -> str:
    kinds = sorted({d.device_kind for d in mesh.devices.flat})
    axes = " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
    return (
        f"mesh {axes} over {mesh.devices.size} {'/'.join(kinds)} device(s), "
        f"{jax.process_count()} process(es)"
    )

"""Checked mode (`prepare(model, checks=True)`): out-of-range indices raise instead of being clamped.

ONNX calls an out-of-range index an error; XLA clamps or drops it silently. In checked mode every
indexing op checks its indices, with `jax.experimental.checkify` inside compiled code and directly on
static data, and the error names the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from .compiler import is_static
from .errors import InvalidInputError
from .graph import Node


def _axis_bounds(data_pos: int, index_pos: int) -> Callable[..., Iterator[tuple[int, Any, int]]]:
    """Indices at `index_pos` address data's `axis` attribute."""

    def bounds(args: list, attrs: dict) -> Iterator[tuple[int, Any, int]]:
        axis = attrs.get("axis", 0)
        yield index_pos, args[index_pos], jnp.shape(args[data_pos])[axis]

    return bounds


def _nd_bounds(args: list, attrs: dict) -> Iterator[tuple[int, Any, int]]:
    """GatherND/ScatterND: the last index axis addresses the data axes after the batch axes."""
    data, indices = args[0], args[1]
    batch = attrs.get("batch_dims", 0)
    for i in range(jnp.shape(indices)[-1]):
        yield 1, indices[..., i], jnp.shape(data)[batch + i]


INDEXED_OPS: dict[str, Callable[..., Iterator[tuple[int, Any, int]]]] = {
    "Gather": _axis_bounds(0, 1),
    "GatherElements": _axis_bounds(0, 1),
    "ScatterElements": _axis_bounds(0, 1),
    "Scatter": _axis_bounds(0, 1),
    "GatherND": _nd_bounds,
    "ScatterND": _nd_bounds,
}


def check_indices(node: Node, args: list, attrs: dict) -> None:
    """Raise (static data) or add a checkify check (traced data) for each index input of `node`."""
    bounds = INDEXED_OPS.get(node.op_type)
    if bounds is None or any(a is None for a in args[:2]):
        return
    for position, indices, size in bounds(args, attrs):
        message = (
            f"node {node.name!r} ({node.op_type}): input {node.inputs[position]!r} has an index outside "
            f"[-{size}, {size - 1}]"
        )
        if is_static(indices):
            if np.size(indices) and not np.all((np.asarray(indices) >= -size) & (np.asarray(indices) < size)):
                raise InvalidInputError(message)
        else:
            checkify.check(jnp.all((indices >= -size) & (indices < size)), message)

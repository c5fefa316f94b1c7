"""Sequences (Python lists of tensors, known in length at trace time) and optionals (a value or None)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..compiler import is_static
from ..registry import op


def _position(position, length: int, *, insert: bool = False) -> int:
    index = int(np.reshape(position, ()))
    if not -length <= index <= (length if insert else length - 1):
        raise IndexError(f"position {index} is out of range for a sequence of length {length}")
    return index + length if index < 0 else index  # an insert at -1 goes before the last element


@op("SequenceEmpty", 11)
def SequenceEmpty(*, dtype=None):
    return []


@op("SequenceConstruct", 11)
def SequenceConstruct(*inputs):
    return list(inputs)


@op("SequenceLength", 11)
def SequenceLength(input_sequence):
    return np.array(len(input_sequence), np.int64)


@op("SequenceAt", 11)
def SequenceAt(input_sequence, position):
    if is_static(position):
        return input_sequence[_position(position, len(input_sequence))]
    index = jnp.reshape(position, ()) % len(input_sequence)  # a loop counter: the elements must share a shape
    return jnp.stack(input_sequence)[index]


@op("SequenceInsert", 11, static=("position",))
def SequenceInsert(input_sequence, tensor, position=None):
    out = list(input_sequence)
    out.insert(len(out) if position is None else _position(position, len(out), insert=True), tensor)
    return out


@op("SequenceErase", 11, static=("position",))
def SequenceErase(input_sequence, position=None):
    out = list(input_sequence)
    del out[-1 if position is None else _position(position, len(out))]
    return out


@op("SplitToSequence", 11, static=("split",))
def SplitToSequence(input, split=None, *, axis=0, keepdims=1):
    length = jnp.shape(input)[axis]
    if split is None:
        parts = jnp.split(input, length, axis=axis)
        return [jnp.squeeze(p, axis) for p in parts] if not keepdims else parts
    sizes = np.broadcast_to(split, ()).item() if np.ndim(split) == 0 else None
    bounds = np.arange(sizes, length, sizes) if sizes else np.cumsum(split)[:-1]
    return jnp.split(input, bounds, axis=axis)


@op("ConcatFromSequence", 11)
def ConcatFromSequence(input_sequence, *, axis, new_axis=0):
    return jnp.stack(input_sequence, axis) if new_axis else jnp.concatenate(input_sequence, axis)


@op("SequenceMap", 17, context=True, fold=False)
def SequenceMap(input_sequence, *additional_inputs, body, ctx):
    results = []
    for i, item in enumerate(input_sequence):
        extra = [x[i] if isinstance(x, list) else x for x in additional_inputs]
        results.append(ctx.run_subgraph(body, item, *extra))
    return tuple(list(column) for column in zip(*results)) if results else tuple([] for _ in body.outputs)


@op("Optional", 15)
def Optional(input=None, *, type=None):
    return input


@op("OptionalHasElement", 15)
def OptionalHasElement(input=None):
    return np.array(input is not None)


@op("OptionalGetElement", 15)
def OptionalGetElement(input):
    if input is None:
        raise ValueError("the optional is empty")
    return input



"""Shape and layout ops: Shape, Reshape, Transpose, Concat, Split, Slice, Squeeze, Pad, Tile, Constant, ..."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import to_numpy_dtype
from ..host_numpy import check_size, dims, shape_value
from ..registry import op


def _ints(values) -> tuple[int, ...]:
    """A static tensor (or attribute list) as Python ints (or symbolic dimensions, under jax.export)."""
    return dims(values)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# Shapes


@op("Shape", 1, shape_only=True)
def Shape_1(data):
    return shape_value(jnp.shape(data))


@op("Shape", 15, shape_only=True)
def Shape(data, *, start=0, end=None):
    return shape_value(jnp.shape(data)[start:end])  # slicing clamps like the spec


@op("Size", 1, shape_only=True)
def Size(data):
    return shape_value((math.prod(jnp.shape(data)),)).reshape(())


def _reshape(data, shape, allowzero: int):
    dims = _ints(shape)
    if not allowzero:
        dims = tuple(jnp.shape(data)[i] if d == 0 else d for i, d in enumerate(dims))
    return jnp.reshape(data, dims)


@op("Reshape", 1)
def Reshape_1(data, *, shape=None):
    return _reshape(data, shape, 0)


@op("Reshape", 5, static=("shape",))
def Reshape_5(data, shape):
    return _reshape(data, shape, 0)


@op("Reshape", 14, static=("shape",))
def Reshape(data, shape, *, allowzero=0):
    return _reshape(data, shape, allowzero)


@op("Flatten", 1)
def Flatten(input, *, axis=1):
    shape = jnp.shape(input)
    axis = _axis(axis, len(shape))
    return jnp.reshape(input, (math.prod(shape[:axis]), math.prod(shape[axis:])))


@op("Transpose", 1)
def Transpose(data, *, perm=None):
    return jnp.transpose(data, perm or None)


@op("Squeeze", 1)
def Squeeze_1(data, *, axes=None):
    return jnp.squeeze(data, axes or None)  # an empty attribute list counts as absent: squeeze every 1


@op("Squeeze", 13, static=("axes",))
def Squeeze(data, axes=None):
    return jnp.squeeze(data, None if axes is None else _ints(axes))


@op("Unsqueeze", 1)
def Unsqueeze_1(data, *, axes):
    return jnp.expand_dims(data, _ints(axes))


@op("Unsqueeze", 13, static=("axes",))
def Unsqueeze(data, axes):
    return jnp.expand_dims(data, _ints(axes))


@op("Expand", 8, static=("shape",))
def Expand(input, shape):
    return jnp.broadcast_to(input, lax.broadcast_shapes(jnp.shape(input), check_size(_ints(shape))))


@op("Tile", 1, static=("tiles", "axis"))
def Tile_1(input, tiles, axis):
    repeats = [1] * jnp.ndim(input)
    repeats[int(axis.item())] = int(tiles.item())
    return jnp.tile(input, repeats)


@op("Tile", 6, static=("repeats",))
def Tile(input, repeats):
    repeats = _ints(repeats)
    check_size(tuple(d * r for d, r in zip(jnp.shape(input), repeats)))
    return jnp.tile(input, repeats)


# Joining and splitting


@op("Concat", 1)
def Concat_1(*inputs, axis=None):
    return jnp.concatenate(inputs, axis=1 if axis is None else axis)  # opset 1 documents 1 as the default


@op("Concat", 4)
def Concat(*inputs, axis):
    return jnp.concatenate(inputs, axis=axis)


def _split(input, sizes, axis: int, count: int):
    """Split along `axis` into `sizes`, or into `count` parts of ceil(dim / count), the last one smaller."""
    dim = jnp.shape(input)[axis]
    if sizes is None:
        part = -(-dim // count)
        sizes = [part] * (count - 1) + [dim - part * (count - 1)]
    return tuple(jnp.split(input, np.cumsum(_ints(sizes))[:-1], axis=axis))


# Opset 1 has both a `split` input and a `split` attribute; the input is named `lengths` here.
@op("Split", 1, static=("lengths",), context=True)
def Split_1(input, lengths=None, *, axis=None, split=None, ctx):
    return _split(input, split if lengths is None else lengths, axis or 0, ctx.num_outputs)


@op("Split", 2, context=True)
def Split_2(input, *, axis=0, split=None, ctx):
    return _split(input, split, axis, ctx.num_outputs)


@op("Split", 13, static=("split",), context=True)
def Split_13(input, split=None, *, axis=0, ctx):
    return _split(input, split, axis, ctx.num_outputs)


@op("Split", 18, static=("split",), context=True)
def Split(input, split=None, *, axis=0, num_outputs=None, ctx):
    return _split(input, split, axis, num_outputs or ctx.num_outputs)


def _spec_slice(start: int, end: int, step: int, dim: int) -> slice:
    """The spec's clamping: negative indices count from the end; a negative step clamps start to
    [0, dim-1] and end to [-1, dim-1], where -1 means "through index 0"."""
    if dim == 0:
        return slice(0, 0)
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


def _slice(data, starts, ends, axes, steps):
    shape = jnp.shape(data)
    starts, ends = _ints(starts), _ints(ends)
    axes = range(len(starts)) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    index = [slice(None)] * len(shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = _spec_slice(start, end, step, shape[axis])
    return data[tuple(index)]


@op("Slice", 1)
def Slice_1(data, *, starts, ends, axes=None):
    return _slice(data, starts, ends, axes, None)


@op("Slice", 10, static=("starts", "ends", "axes", "steps"))
def Slice(data, starts, ends, axes=None, steps=None):
    return _slice(data, starts, ends, axes, steps)


# Padding


def _pad(data, pads, mode: str, value, axes=None):
    """ONNX pads [begin..., end...] over `axes`; negative pads crop."""
    rank = jnp.ndim(data)
    pads = _ints(pads)
    axes = range(rank) if axes is None else [_axis(a, rank) for a in _ints(axes)]
    widths = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + len(axes)])
    shape = jnp.shape(data)
    data = data[tuple(slice(max(-b, 0), n - max(-e, 0)) for (b, e), n in zip(widths, shape))]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        value = jnp.reshape(jnp.asarray(0 if value is None else value, jnp.result_type(data)), ())
        return jnp.pad(data, widths, constant_values=value)
    return jnp.pad(data, widths, mode=mode)  # reflect, edge and wrap are numpy's names too


@op("Pad", 1)
def Pad_1(data, *, paddings, mode="constant", value=0.0):
    return _pad(data, paddings, mode, value)


@op("Pad", 2)
def Pad_2(data, *, pads, mode="constant", value=0.0):
    return _pad(data, pads, mode, value)


@op("Pad", 11, static=("pads",))
def Pad_11(data, pads, constant_value=None, *, mode="constant"):
    return _pad(data, pads, mode, constant_value)


@op("Pad", 18, static=("pads", "axes"))
def Pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    return _pad(data, pads, mode, constant_value, axes)


@op("CenterCropPad", 18, static=("shape",))
def CenterCropPad(input_data, shape, *, axes=None):
    rank = jnp.ndim(input_data)
    axes = range(rank) if axes is None else [_axis(a, rank) for a in axes]
    grow = [size - jnp.shape(input_data)[a] for a, size in zip(axes, _ints(shape))]
    begins = [int(g / 2) for g in grow]  # the odd element goes at the end, whether cropping or padding
    return _pad(input_data, begins + [g - b for g, b in zip(grow, begins)], "constant", None, axes)


# Rearranging depth and space


@op("DepthToSpace", 1)
def DepthToSpace_1(input, *, blocksize):
    return DepthToSpace(input, blocksize=blocksize)


@op("DepthToSpace", 11)
def DepthToSpace(input, *, blocksize, mode="DCR"):
    b, c, h, w = jnp.shape(input)
    n, depth = blocksize, c // blocksize**2
    if mode == "DCR":
        x = jnp.transpose(jnp.reshape(input, (b, n, n, depth, h, w)), (0, 3, 4, 1, 5, 2))
    else:
        x = jnp.transpose(jnp.reshape(input, (b, depth, n, n, h, w)), (0, 1, 4, 2, 5, 3))
    return jnp.reshape(x, (b, depth, h * n, w * n))


@op("SpaceToDepth", 1)
def SpaceToDepth_1(input, *, blocksize):
    return SpaceToDepth(input, blocksize=blocksize)


@op("SpaceToDepth", 28)
def SpaceToDepth(input, *, blocksize, mode="DCR"):
    b, c, h, w = jnp.shape(input)
    n = blocksize
    x = jnp.reshape(input, (b, c, h // n, n, w // n, n))
    x = jnp.transpose(x, (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4))
    return jnp.reshape(x, (b, c * n * n, h // n, w // n))


# Constants and generators


@op("Constant", 1)
def Constant_1(*, value):
    return value


@op("Constant", 11)
def Constant_11(*, value=None, sparse_value=None):
    return value if value is not None else sparse_value


@op("Constant", 12)
def Constant(*, value=None, sparse_value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None):
    if value is not None or sparse_value is not None:
        return Constant_11(value=value, sparse_value=sparse_value)
    for given, dtype in ((value_float, np.float32), (value_floats, np.float32), (value_int, np.int64),
                         (value_ints, np.int64), (value_string, np.str_), (value_strings, np.str_)):
        if given is not None:
            return np.array(given, dtype)
    raise ValueError("Constant has none of its value attributes")


@op("ConstantOfShape", 9, static=("input",))
def ConstantOfShape(input, *, value=None):
    value = np.zeros(1, np.float32) if value is None else value
    return jnp.full(check_size(_ints(input)), value.reshape(()), dtype=value.dtype)


@op("Identity", 1)
def Identity(input):
    return input  # tensors, sequences (lists) and optionals (None) alike


@op("Range", 11, static=("start", "limit", "delta"))
def Range_11(start, limit, delta):
    """The length depends on the values, so all three are static and numpy builds the range at trace time."""
    return np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)


@op("Range", 27, static=("start", "limit", "delta"))
def Range(start, limit, delta, *, stash_type=1):
    dtype = start.dtype
    if dtype not in (np.float16, jnp.bfloat16):
        return Range_11(start, limit, delta)
    stash = to_numpy_dtype(stash_type)  # float16/bfloat16 count and step in float32 (or float64)
    return np.arange(start.astype(stash).item(), limit.item(), delta.item(), dtype=stash).astype(dtype)


@op("EyeLike", 9, shape_only=True)
def EyeLike(input, *, dtype=None, k=0):
    """Built with numpy from the input's static shape, so it is static even for a traced input."""
    dtype = jnp.result_type(input) if dtype is None else to_numpy_dtype(dtype)
    rows, cols = jnp.shape(input)
    return np.eye(rows, cols, k, dtype=dtype)


@op("Trilu", 14, static=("k",))
def Trilu(input, k=None, *, upper=1):
    k = 0 if k is None else int(k.item())
    return jnp.triu(input, k) if upper else jnp.tril(input, k)

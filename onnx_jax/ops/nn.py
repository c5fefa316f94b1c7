"""Neural-network ops: MatMul, Gemm, convolution, pooling, normalization, softmax, dropout, Einsum."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import to_numpy_dtype
from ..registry import op
from .reduction import folds, mean_kept, reduce_trailing

# Helpers shared by the family


def _acc_dtype(dtype) -> np.dtype:
    """The dtype to accumulate in: at least float32 for narrow floats, the dtype itself otherwise."""
    dtype = jnp.dtype(dtype)
    return jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else dtype


def _per_axis(values, n: int, fill: int) -> tuple[int, ...]:
    """An optional per-spatial-axis attribute (strides, dilations) as n ints."""
    return tuple(values) if values else (fill,) * n


def _padding(auto_pad: str, pads, sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(low, high) padding per spatial axis, from explicit pads or auto_pad."""
    n = len(sizes)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        padding = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            padding.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
        return padding
    if auto_pad == "VALID" or not pads:
        return [(0, 0)] * n
    return list(zip(pads[:n], pads[n:]))


def _trailing_axes(x, axis: int) -> tuple[int, ...]:
    """The axes from `axis` (possibly negative) to the last."""
    return tuple(range(axis % x.ndim, x.ndim))


def _channel_vector(v, ndim: int):
    """A per-channel vector shaped to broadcast against an N x C x D1 x ... tensor."""
    return jnp.reshape(v, (-1,) + (1,) * (ndim - 2))


# Matrix products


@op("MatMul", 1)
def MatMul(a, b):
    dtype = jnp.result_type(a)
    return jnp.matmul(a, b, preferred_element_type=_acc_dtype(dtype)).astype(dtype)


def _gemm(a, b, c, alpha, beta, trans_a, trans_b):
    dtype = jnp.result_type(a)
    y = MatMul(a.T if trans_a else a, b.T if trans_b else b)
    if alpha != 1.0:
        y = (y * alpha).astype(dtype)
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else (c * beta).astype(dtype))
    return y


@op("Gemm", 1)
def Gemm_1(a, b, c, *, alpha=1.0, beta=1.0, broadcast=0, transA=0, transB=0):
    return _gemm(a, b, c, alpha, beta, transA, transB)  # without `broadcast`, C has Y's shape anyway


@op("Gemm", 7)
def Gemm_7(a, b, c, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    return _gemm(a, b, c, alpha, beta, transA, transB)


@op("Gemm", 11)
def Gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    return _gemm(a, b, c, alpha, beta, transA, transB)


@op("Einsum", 12)
def Einsum(*inputs, equation):
    return jnp.einsum(equation.replace(" ", ""), *inputs)


# Convolution


@op("Conv", 1)
def Conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """ONNX Conv, (O, I, spatial...) weights: ConvChannelsLast's lowering with the weights moved inside the trace
    (for to_jax; prepare moves constant weights once, onnx_jax.optimize.channels_last_convs)."""
    return ConvChannelsLast(x, jnp.moveaxis(jnp.asarray(w), (0, 1), (-1, -2)), b, auto_pad=auto_pad,
                            dilations=dilations, group=group, pads=pads, strides=strides)


@op("Conv", 1, domain="onnx_jax")
def ConvChannelsLast(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                     strides=None):
    """ONNX Conv on channels-first data with (spatial..., I, O) weights, made by onnx_jax.optimize.

    It computes channels-last, the layout XLA's CPU convolution uses (XLA cancels the transposes between
    neighbouring convs), and avoids XLA's convolution where a matmul or a fused loop is faster (measured in
    docs/performance.md): 1x1 convolutions are a strided slice and a matmul (a multiply-add over at most
    _MAX_SUMMED_CHANNELS input channels), depthwise ones a multiply-add over the kernel taps, and first layers
    over few channels (at most _MAX_IMAGE_PRODUCTS channel-taps) a multiply-add that reads the channels-first input
    in place. (A matmul of im2col patches measured no faster than XLA's convolution, and slower on small images.)
    """
    n = w.ndim - 2
    if x.shape[1] != w.shape[n] * group:  # the multiply-adds below would index the weight out of range, silently
        raise ValueError(f"X has {x.shape[1]} channels, W expects {w.shape[n] * group} ({w.shape[n]} per group x "
                         f"group={group})")
    strides, dilations = _per_axis(strides, n, 1), _per_axis(dilations, n, 1)
    padding = _padding(auto_pad, pads, x.shape[2:], w.shape[:n], strides, dilations)
    acc = _acc_dtype(x.dtype)
    x_last = jnp.moveaxis(x, 1, -1)
    kernel, taps = w.shape[:n], math.prod(w.shape[:n])
    if group == 1 and taps == 1 and all(p == (0, 0) for p in padding):
        x_last = x_last[(slice(None), *(slice(None, None, s) for s in strides))]
        w = w.reshape(w.shape[n:])
        if x.shape[1] <= _MAX_SUMMED_CHANNELS:
            y = jnp.zeros((), acc)
            for c in range(x.shape[1]):
                y = y + x_last[..., c:c + 1].astype(acc) * w[c].astype(acc)
        else:
            y = jnp.matmul(x_last, w, preferred_element_type=acc)
    elif group == 1 and x.shape[1] * taps <= _MAX_IMAGE_PRODUCTS:
        # the branch above reads channels-last (its input is usually another conv's output); reading channels-first
        # there put transposing copies into ultraface's HLO, while this one's input is usually the model's image
        y = jnp.zeros((), acc)
        for tap, window in _windows(x, kernel, strides, padding, dilations, channels_first=True):
            for c in range(x.shape[1]):
                y = y + window[:, c, ..., None].astype(acc) * w[tap][c].astype(acc)
    elif group == x.shape[1] and w.shape[n] == 1 and taps <= _MAX_DEPTHWISE_TAPS:
        if (multiplier := w.shape[-1] // x.shape[1]) > 1:
            x_last = jnp.repeat(x_last, multiplier, axis=-1)
        y = _depthwise(x_last, w, kernel, strides, padding, dilations, acc)
    else:
        spatial = "DHW"[-n:]
        y = lax.conv_general_dilated(
            x_last, w, strides, padding, rhs_dilation=dilations, feature_group_count=group,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"), preferred_element_type=acc,
        )
    y = y if b is None else y + b
    return jnp.moveaxis(y.astype(x.dtype), -1, 1)


@op("ConcatConv", 1, domain="onnx_jax")
def ConcatConv(w, b, *pieces, strides=None):
    """A 1x1 ConvChannelsLast (no padding, group 1) of the channel concatenation of `pieces`, made by
    onnx_jax.optimize: the sum of each piece's 1x1 convolution with its rows of the weight, so the concatenation
    is never written (and XLA cannot fuse the pieces' producers into its loop)."""
    offsets = np.cumsum([0] + [p.shape[1] for p in pieces])
    if offsets[-1] != w.shape[-2]:
        raise ValueError(f"X (the Concat of {len(pieces)} inputs) has {offsets[-1]} channels, W expects {w.shape[-2]}")
    y = sum(ConvChannelsLast(piece, w[..., lo:hi, :], strides=strides)
            for piece, lo, hi in zip(pieces, offsets, offsets[1:]))
    return y if b is None else y + _channel_vector(b, y.ndim).astype(y.dtype)


# a 1x1 convolution over few channels is a memory-bound matmul; as a multiply-add XLA fuses it with the activation
# and padding after it, one pass less over its (often large) output (MobileNetV2's 16 -> 96 expansion)
_MAX_SUMMED_CHANNELS = 16
_MAX_DEPTHWISE_TAPS = 49  # kernels up to 7x7 as shifted multiply-adds; larger ones go to XLA's convolution
# a first layer over an RGB image as multiply-adds reading the channels-first input in place: XLA's convolution
# wants it copied channels-last first, and its kernels are slow on few input channels. Single convolutions and ReLU
# (512-bit vectors): 5x5 over RGB into 12-64 channels 0.28-0.66x of XLA's time, 3x3 over 8 channels 0.79x; past 75
# terms XLA's loop slows down (7x7 over RGB 3x, 3x3 over 16 channels 1.6-2.7x slower than its convolution)
_MAX_IMAGE_PRODUCTS = 75  # input channels x kernel taps


def _output_sizes(spatial, kernel, strides, padding, dilations) -> list[int]:
    """Output sizes of a convolution over the spatial sizes `spatial`."""
    return [(size + lo + hi - (k - 1) * d - 1) // s + 1
            for size, k, s, (lo, hi), d in zip(spatial, kernel, strides, padding, dilations)]


def _windows(x, kernel, strides, padding, dilations, channels_first: bool = False, fill=0):
    """(tap, the input padded with `fill` seen through that kernel tap), for every tap of the kernel, in row-major
    order; x is channels-last unless `channels_first`."""
    lead = 2 if channels_first else 1
    spatial = x.shape[lead:lead + len(kernel)]
    sizes = _output_sizes(spatial, kernel, strides, padding, dilations)
    config = [(0, 0, 0)] * x.ndim
    config[lead:lead + len(kernel)] = [(lo, hi, 0) for lo, hi in padding]
    x = lax.pad(x, jnp.asarray(fill, x.dtype), config)
    for tap in itertools.product(*map(range, kernel)):
        window = tuple(slice(t * d, t * d + (size - 1) * s + 1, s)
                       for t, d, s, size in zip(tap, dilations, strides, sizes))
        yield tap, x[(slice(None),) * lead + window]


def _depthwise(x, w, kernel, strides, padding, dilations, acc):
    """A depthwise convolution of channels-last x with (spatial..., 1, channels) weights: a multiply-add over the
    kernel taps, each a shifted window of the padded input.

    With stride 1 over 2+ spatial axes the windows are shifted slices of the padded input with its spatial axes
    flattened, summed at the padded width and cut to the output's once at the end: the same values, but XLA can
    no longer see the window that lies inside the unpadded input as the input itself. It then fused the input's
    producer into the loop a second time (MobileNetV2's and ultraface's first layer, computed twice).
    """
    n = len(kernel)
    if n < 2 or any(s != 1 for s in strides):
        return sum(window.astype(acc) * w[tap][0].astype(acc)
                   for tap, window in _windows(x, kernel, strides, padding, dilations))
    sizes = _output_sizes(x.shape[1:1 + n], kernel, strides, padding, dilations)
    padded = [size + lo + hi for size, (lo, hi) in zip(x.shape[1:1 + n], padding)]
    steps = [math.prod(padded[i + 1:]) for i in range(n)]  # flat distance between neighbours along each axis
    overhang = sum((k - 1) * d * step for k, d, step in zip(kernel[1:], dilations[1:], steps[1:]))
    extra = -(-overhang // steps[0])  # rows more below, so the last tap's slice stays inside
    config = [(0, 0, 0), (padding[0][0], padding[0][1] + extra, 0), *[(lo, hi, 0) for lo, hi in padding[1:]], (0, 0, 0)]
    flat = lax.pad(x, jnp.zeros((), x.dtype), config).reshape(x.shape[0], -1, x.shape[-1])
    y = jnp.zeros((), acc)
    for tap in itertools.product(*map(range, kernel)):
        start = sum(t * d * step for t, d, step in zip(tap, dilations, steps))
        window = flat[:, start:start + sizes[0] * steps[0]].reshape(x.shape[0], sizes[0], *padded[1:], x.shape[-1])
        y = y + window.astype(acc) * w[tap][0].astype(acc)
    return y[(slice(None),) + tuple(slice(0, size) for size in sizes)]


@op("ConvTranspose", 1)
def ConvTranspose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  output_padding=None, output_shape=None, pads=None, strides=None):
    """The gradient of Conv: a convolution of the stride-dilated input with the flipped, transposed kernel."""
    n = w.ndim - 2
    strides, dilations = _per_axis(strides, n, 1), _per_axis(dilations, n, 1)
    extra = _per_axis(output_padding, n, 0)
    spans = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dilations)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        targets = output_shape[-n:] if output_shape is not None else [i * s for i, s in zip(x.shape[2:], strides)]
        padding = []
        for size, s, span, e, target in zip(x.shape[2:], strides, spans, extra, targets):
            full = s * (size - 1) + e + span
            total = max(0, full - target)
            low = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            padding.append((low, full - target - low))  # a larger target extends the end, like output_padding
    else:
        padding = _padding(auto_pad, pads, x.shape[2:], w.shape[2:], strides, dilations)
    c_in, c_out = w.shape[0] // group, w.shape[1]
    kernel = jnp.reshape(w, (group, c_in, c_out) + w.shape[2:]).swapaxes(1, 2)
    kernel = jnp.flip(jnp.reshape(kernel, (group * c_out, c_in) + w.shape[2:]), tuple(range(2, n + 2)))
    y = lax.conv_general_dilated(
        x, kernel, (1,) * n, [(span - 1 - lo, span - 1 - hi + e) for span, (lo, hi), e in zip(spans, padding, extra)],
        lhs_dilation=strides, rhs_dilation=dilations, feature_group_count=group,
        preferred_element_type=_acc_dtype(x.dtype),
    )
    y = y if b is None else y + _channel_vector(b, y.ndim)
    return y.astype(x.dtype)


@op("DeformConv", 19)
def DeformConv(x, w, offset, b=None, mask=None, *, dilations=None, group=1, kernel_shape=None, offset_group=1,
               pads=None, strides=None):
    """Conv whose sampling points move by `offset` (bilinear, zero outside), each tap scaled by `mask`."""
    batch, channels, *sizes = x.shape
    n, kernel, out = len(sizes), w.shape[2:], offset.shape[2:]
    strides, dilations = _per_axis(strides, n, 1), _per_axis(dilations, n, 1)
    padding = _padding("NOTSET", pads, sizes, kernel, strides, dilations)
    taps = math.prod(kernel)
    # sampling positions per axis: (batch, offset_group, taps, *out)
    offset = jnp.reshape(offset, (batch, offset_group, taps, n) + out)
    grids = jnp.meshgrid(*[jnp.arange(k) * d for k, d in zip(kernel, dilations)], indexing="ij")
    starts = jnp.meshgrid(*[jnp.arange(o) * s - lo for o, s, (lo, _) in zip(out, strides, padding)], indexing="ij")
    positions = [
        offset[:, :, :, i] + jnp.reshape(grids[i], (taps,) + (1,) * n) + starts[i] for i in range(n)
    ]
    values = jnp.reshape(x, (batch, offset_group, channels // offset_group, -1))
    sampled = 0
    for corner in np.ndindex(*(2,) * n):  # the 2**n neighbours of each bilinear sample
        weight, index, inside = 1, 0, True
        for i, (p, bit) in enumerate(zip(positions, corner)):
            c = jnp.floor(p) + bit
            weight = weight * (1 - jnp.abs(p - c))
            inside = inside & (c >= 0) & (c <= sizes[i] - 1)
            index = index * sizes[i] + jnp.clip(c, 0, sizes[i] - 1).astype(jnp.int32)
        gathered = jnp.take_along_axis(values, jnp.reshape(index, (batch, offset_group, 1, -1)), axis=3)
        sampled = sampled + gathered * jnp.reshape(jnp.where(inside, weight, 0), (batch, offset_group, 1, -1))
    sampled = jnp.reshape(sampled, (batch, offset_group, channels // offset_group, taps) + out)
    if mask is not None:
        sampled = sampled * jnp.reshape(mask, (batch, offset_group, 1, taps) + out)
    cols = jnp.reshape(sampled, (batch, group, channels // group, taps, -1))
    y = jnp.einsum("gock,bgckl->bgol", jnp.reshape(w, (group, -1, channels // group, taps)), cols)
    y = jnp.reshape(y, (batch, w.shape[0]) + out)
    y = y if b is None else y + _channel_vector(b, y.ndim)
    return y.astype(x.dtype)


@op("Col2Im", 18, static=("image_shape", "block_shape"))
def Col2Im(x, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Sums the columns (N, C*prod(block), L) back into images: one scatter-add over a static index map."""
    image, block = [int(s) for s in image_shape], [int(s) for s in block_shape]
    n = len(image)
    strides, dilations = _per_axis(strides, n, 1), _per_axis(dilations, n, 1)
    padding = _padding("NOTSET", pads, image, block, strides, dilations)
    coords = []  # per axis, the image coordinate of each (k1, ..., kn, L1, ..., Ln) column element
    for i, (size, k, s, d, (lo, hi)) in enumerate(zip(image, block, strides, dilations, padding)):
        blocks = (size + lo + hi - (k - 1) * d - 1) // s + 1
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = k, blocks
        coords.append(np.reshape(np.arange(k)[:, None] * d + np.arange(blocks) * s - lo, shape))
    inside = functools.reduce(np.logical_and, [(c >= 0) & (c < size) for c, size in zip(coords, image)])
    flat = np.where(inside, np.ravel_multi_index(coords, image, mode="clip"), math.prod(image)).ravel()
    batch, channels = x.shape[0], x.shape[1] // math.prod(block)
    y = jnp.zeros((batch, channels, math.prod(image)), x.dtype)
    y = y.at[:, :, flat].add(jnp.reshape(x, (batch, channels, -1)), mode="drop")
    return jnp.reshape(y, (batch, channels, *image))


# Pooling


def _window(x, init, reducer, kernel, strides, dilations, padding):
    """lax.reduce_window over the trailing len(kernel) axes of x (an array or a tuple of arrays).

    Channels-first images are reduced channels-last, the layout of the convolutions around a pooling: XLA then
    cancels the transposes instead of copying each pooled image out to channels-first and back. There,
    overlapping windows of up to _MAX_POOL_TAPS taps are the reducer folded over shifted slices of the padded
    image in window order (the same maxima; sums in that order): XLA's CPU reduce-window, not vectorized across
    channels, took 2-7x longer. Windows that tile the image stay a reduce-window: as slices, XLA fused mnist-8's
    first convolution into the pooling loop, which ran 1.5-2x slower.
    """
    last = isinstance(x, jax.Array) and x.ndim == len(kernel) + 2
    x = jnp.moveaxis(x, 1, -1) if last else x
    overlapping = any(s < (k - 1) * d + 1 for k, s, d in zip(kernel, strides, dilations))
    if last and overlapping and math.prod(kernel) <= _MAX_POOL_TAPS:
        windows = _windows(x, kernel, strides, padding, dilations, fill=init)
        return jnp.moveaxis(functools.reduce(reducer, (window for _, window in windows)), -1, 1)
    lead, trail = (1,) * (jnp.ndim(jax.tree.leaves(x)[0]) - len(kernel) - last), (1,) * last
    y = lax.reduce_window(
        x, init, reducer, lead + tuple(kernel) + trail, lead + tuple(strides) + trail,
        [(0, 0)] * len(lead) + list(padding) + [(0, 0)] * last, window_dilation=lead + tuple(dilations) + trail,
    )
    return jnp.moveaxis(y, -1, 1) if last else y


_MAX_POOL_TAPS = 169  # up to 13x13 (YOLO's SPP pooling), measured 6x faster than reduce-window


def _pool_geometry(x, kernel, strides, dilations, pads, auto_pad, ceil_mode):
    """Strides, dilations, the explicit (low, high) padding per spatial axis, and that padding widened so
    ceil_mode's last windows fit."""
    n = len(kernel)
    strides, dilations = _per_axis(strides, n, 1), _per_axis(dilations, n, 1)
    padding = _padding(auto_pad, pads, x.shape[2:], kernel, strides, dilations)
    widened = []
    for size, k, s, d, (lo, hi) in zip(x.shape[2:], kernel, strides, dilations, padding):
        span = (k - 1) * d + 1
        out = (size + lo + hi - span) // s + 1
        if ceil_mode and auto_pad != "VALID":
            out = -(-(size + lo + hi - span) // s) + 1
            if (out - 1) * s >= size + lo:  # the last window must start inside the input or its low padding
                out -= 1
        widened.append((lo, max(hi, (out - 1) * s + span - size - lo)))
    return strides, dilations, padding, widened


def _flat_index(shape, column_major: bool = False):
    """Each element's flat index in x; with column_major, spatial axes count in column-major order."""
    if not column_major:
        return jnp.reshape(jnp.arange(math.prod(shape), dtype=jnp.int64), shape)
    spatial = tuple(range(2, len(shape)))
    index = jnp.reshape(jnp.arange(math.prod(shape), dtype=jnp.int64), shape[:2] + shape[2:][::-1])
    return jnp.transpose(index, (0, 1) + spatial[::-1])


def _first_max(a, b):
    """Reducer over (value, row-major index, *payload): the larger value, the smaller index on ties."""
    take_b = (b[0] > a[0]) | ((b[0] == a[0]) & (b[1] < a[1]))
    return tuple(jnp.where(take_b, vb, va) for va, vb in zip(a, b))


def _max_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, storage_order=0, with_indices=False):
    strides, dilations, _, padding = _pool_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    # a concrete numpy init value lets JAX recognise a max (with a derivative) rather than a generic reduction
    lowest = np.array(-np.inf if floating else np.iinfo(x.dtype).min, x.dtype)
    y = _window(x, lowest, lax.max, kernel_shape, strides, dilations, padding)
    if not with_indices:
        return y
    # ties go to the first element in row-major order, whatever order storage_order reports indices in;
    # a variadic reduce_window has no derivative, so Y stays the plain (differentiable) max above
    indices = (_flat_index(x.shape),) + ((_flat_index(x.shape, column_major=True),) if storage_order else ())
    no_index = np.array(np.iinfo(np.int64).max, np.int64)
    _, *indices = _window((lax.stop_gradient(x), *indices), (lowest,) + (no_index,) * len(indices), _first_max,
                          kernel_shape, strides, dilations, padding)
    return y, indices[-1]


@op("MaxPool", 1)
def MaxPool_1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None):
    return _max_pool(x, kernel_shape, strides, None, pads, auto_pad, 0)


@op("MaxPool", 8, context=True)
def MaxPool_8(x, *, auto_pad="NOTSET", kernel_shape, pads=None, storage_order=0, strides=None, ctx):
    return _max_pool(x, kernel_shape, strides, None, pads, auto_pad, 0, storage_order, ctx.output_used(1))


@op("MaxPool", 10, context=True)
def MaxPool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, pads=None, storage_order=0,
            strides=None, ctx):
    return _max_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, storage_order, ctx.output_used(1))


def _average_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, count_include_pad):
    """Window sums over window sizes; the sizes count padding only with count_include_pad, never ceil_mode's extra."""
    strides, dilations, padding, widened = _pool_geometry(x, kernel_shape, strides, dilations, pads, auto_pad,
                                                          ceil_mode)
    acc = _acc_dtype(x.dtype)
    sums = _window(x.astype(acc), np.array(0, acc), lax.add, kernel_shape, strides, dilations, widened)
    ones = jnp.pad(jnp.ones(x.shape[2:], acc), padding, constant_values=count_include_pad)
    extra = [(0, hi - explicit) for (_, hi), (_, explicit) in zip(widened, padding)]
    counts = _window(ones, np.array(0, acc), lax.add, kernel_shape, strides, dilations, extra)
    return (sums / counts).astype(x.dtype)


@op("AveragePool", 1)
def AveragePool_1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None):
    return _average_pool(x, kernel_shape, strides, None, pads, auto_pad, 0, 0)


@op("AveragePool", 7)
def AveragePool_7(x, *, auto_pad="NOTSET", count_include_pad=0, kernel_shape, pads=None, strides=None):
    return _average_pool(x, kernel_shape, strides, None, pads, auto_pad, 0, count_include_pad)


@op("AveragePool", 10)
def AveragePool_10(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, kernel_shape, pads=None,
                   strides=None):
    return _average_pool(x, kernel_shape, strides, None, pads, auto_pad, ceil_mode, count_include_pad)


@op("AveragePool", 19)
def AveragePool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, kernel_shape, pads=None,
                strides=None):
    return _average_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, count_include_pad)


def _lp_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, p):
    """The p-norm of each window; padding adds zeros."""
    strides, dilations, _, padding = _pool_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    acc = _acc_dtype(x.dtype)
    sums = _window(jnp.abs(x.astype(acc)) ** p, np.array(0, acc), lax.add, kernel_shape, strides, dilations, padding)
    return (sums ** (1 / p)).astype(x.dtype)


@op("LpPool", 1)
def LpPool_1(x, *, auto_pad="NOTSET", kernel_shape=None, p=2.0, pads=None, strides=None):
    return _lp_pool(x, kernel_shape or x.shape[2:], strides, None, pads, auto_pad, 0, p)


@op("LpPool", 2)
def LpPool_2(x, *, auto_pad="NOTSET", kernel_shape, p=2, pads=None, strides=None):
    return _lp_pool(x, kernel_shape, strides, None, pads, auto_pad, 0, p)


@op("LpPool", 18)
def LpPool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, p=2, pads=None, strides=None):
    return _lp_pool(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, p)


def _spatial_axes(x) -> tuple[int, ...]:
    return tuple(range(2, jnp.ndim(x)))


@op("GlobalAveragePool", 1)
def GlobalAveragePool(x):
    return jnp.mean(x, _spatial_axes(x), keepdims=True, dtype=_acc_dtype(x.dtype)).astype(x.dtype)


@op("GlobalMaxPool", 1)
def GlobalMaxPool(x):
    return jnp.max(x, _spatial_axes(x), keepdims=True)


@op("GlobalLpPool", 1)
def GlobalLpPool(x, *, p=2.0):
    powered = jnp.abs(x.astype(_acc_dtype(x.dtype))) ** p
    return (jnp.sum(powered, _spatial_axes(x), keepdims=True) ** (1 / p)).astype(x.dtype)


@op("MaxUnpool", 9, static=("output_shape",))
def MaxUnpool(x, indices, output_shape=None, *, kernel_shape, pads=None, strides=None):
    """Scatters x to the flat positions `indices` (as MaxPool's Indices output gives them) of a zero tensor."""
    n = len(kernel_shape)
    strides, pads = _per_axis(strides, n, 1), _per_axis(pads, 2 * n, 0)
    if output_shape is not None:
        shape = tuple(int(d) for d in output_shape)
    else:
        sizes = zip(x.shape[2:], strides, kernel_shape, pads[:n], pads[n:])
        shape = x.shape[:2] + tuple((size - 1) * s + k - lo - hi for size, s, k, lo, hi in sizes)
    y = jnp.zeros(math.prod(shape), x.dtype).at[jnp.ravel(indices)].set(jnp.ravel(x), mode="drop")
    return jnp.reshape(y, shape)


# Normalization


def _standardize(x, axes, epsilon):
    """(x - mean) / sqrt(var + epsilon) over `axes`, with the mean and 1/sqrt(var + epsilon) (kept dims)."""
    mean = mean_kept(x, axes)
    centered = x - mean
    inv_std = lax.rsqrt(mean_kept(jnp.square(centered), axes) + jnp.asarray(epsilon, x.dtype))
    return centered * inv_std, mean, inv_std


def _batch_norm(x, scale, bias, mean, var, epsilon, spatial=1):
    """Per-channel normalization (per channel and position without `spatial`) with the given statistics."""
    acc = _acc_dtype(x.dtype)
    scale, bias, mean, var = (jnp.asarray(v, acc) for v in (scale, bias, mean, var))
    if spatial:
        scale, bias, mean, var = (_channel_vector(v, x.ndim) for v in (scale, bias, mean, var))
    y = (x.astype(acc) - mean) * lax.rsqrt(var + jnp.asarray(epsilon, acc)) * scale + bias
    return y.astype(x.dtype)


def _batch_norm_training(x, scale, bias, mean, var, epsilon, momentum, spatial=1):
    """Normalizes with the batch's statistics; returns Y, the updated running mean and var, and the batch's."""
    axes = (0,) + (_spatial_axes(x) if spatial else ())
    xf = x.astype(_acc_dtype(x.dtype))
    batch_mean, batch_var = jnp.mean(xf, axes), jnp.var(xf, axes)
    y = _batch_norm(x, scale, bias, batch_mean, batch_var, epsilon, spatial)
    dtype = jnp.result_type(mean)
    running_mean = (mean * momentum + batch_mean * (1 - momentum)).astype(dtype)
    running_var = (var * momentum + batch_var * (1 - momentum)).astype(dtype)
    return y, running_mean, running_var, batch_mean.astype(dtype), batch_var.astype(dtype)


# Before opset 14, asking for the optional running/saved statistics outputs is what selects training mode.


@op("BatchNormalization", 1, context=True)
def BatchNormalization_1(x, scale, b, mean, var, *, epsilon=1e-5, is_test=0, momentum=0.9, spatial=1, ctx):
    return BatchNormalization_7(x, scale, b, mean, var, epsilon=epsilon, momentum=momentum, spatial=spatial, ctx=ctx)


@op("BatchNormalization", 7, context=True)
def BatchNormalization_7(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1, ctx):
    if ctx.num_outputs > 1:
        return _batch_norm_training(x, scale, b, mean, var, epsilon, momentum, spatial)
    return _batch_norm(x, scale, b, mean, var, epsilon, spatial)


@op("BatchNormalization", 9, context=True)
def BatchNormalization_9(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, ctx):
    return BatchNormalization_7(x, scale, b, mean, var, epsilon=epsilon, momentum=momentum, ctx=ctx)


@op("BatchNormalization", 14)
def BatchNormalization(x, scale, b, input_mean, input_var, *, epsilon=1e-5, momentum=0.9, training_mode=0):
    if training_mode:
        return _batch_norm_training(x, scale, b, input_mean, input_var, epsilon, momentum)[:3]
    return _batch_norm(x, scale, b, input_mean, input_var, epsilon)


@op("InstanceNormalization", 1)
def InstanceNormalization(x, scale, b, *, epsilon=1e-5):
    acc = _acc_dtype(x.dtype)
    y, _, _ = _standardize(x.astype(acc), _spatial_axes(x), epsilon)
    return (y * _channel_vector(scale, x.ndim) + _channel_vector(b, x.ndim)).astype(x.dtype)


@op("LayerNormalization", 17)
def LayerNormalization(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Statistics over axes [axis, rank) in the stash type; Mean and InvStdDev keep that type."""
    normalized, mean, inv_std = _standardize(x.astype(to_numpy_dtype(stash_type)), _trailing_axes(x, axis), epsilon)
    y = normalized.astype(x.dtype) * scale
    return (y if b is None else y + b), mean, inv_std


def _group_standardize(x, num_groups, epsilon, dtype):
    """x standardized per (sample, group of channels), computed in dtype, shaped (N, C, -1)."""
    grouped = jnp.reshape(x.astype(dtype), (x.shape[0], num_groups, -1))
    return jnp.reshape(_standardize(grouped, (2,), epsilon)[0], (x.shape[0], x.shape[1], -1))


@op("GroupNormalization", 18)
def GroupNormalization_18(x, scale, bias, *, epsilon=1e-5, num_groups):
    """Opset 18's scale and bias hold one value per group."""
    y = _group_standardize(x, num_groups, epsilon, _acc_dtype(x.dtype))
    y = jnp.reshape(y, (x.shape[0], num_groups, -1)) * scale[:, None] + bias[:, None]
    return jnp.reshape(y, x.shape).astype(x.dtype)


@op("GroupNormalization", 21)
def GroupNormalization(x, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1):
    y = _group_standardize(x, num_groups, epsilon, to_numpy_dtype(stash_type)).astype(x.dtype)
    return jnp.reshape(y * scale[:, None] + bias[:, None], x.shape)


@op("RMSNormalization", 23)
def RMSNormalization(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    xs = x.astype(to_numpy_dtype(stash_type))
    mean_square = mean_kept(jnp.square(xs), _trailing_axes(x, axis))
    y = xs * lax.rsqrt(mean_square + jnp.asarray(epsilon, xs.dtype))
    return y.astype(scale.dtype) * scale


@op("LRN", 1)
def LRN(x, *, alpha=1e-4, beta=0.75, bias=1.0, size):
    """Each value over (bias + alpha/size * the sum of squares of `size` neighbouring channels) ** beta."""
    acc = _acc_dtype(x.dtype)
    xf = x.astype(acc)
    ones, low = (1,) * (x.ndim - 1), (size - 1) // 2
    padding = [(low, size - 1 - low)] + [(0, 0)] * (x.ndim - 2)
    sums = _window(jnp.square(xf), np.array(0, acc), lax.add, (size,) + ones[1:], ones, ones, padding)
    return (xf / (sums * (alpha / size) + bias) ** jnp.asarray(beta, acc)).astype(x.dtype)


@op("MeanVarianceNormalization", 9)
def MeanVarianceNormalization(x, *, axes=(0, 2, 3)):
    xf = x.astype(_acc_dtype(x.dtype))
    mean = jnp.mean(xf, tuple(axes), keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(xf - mean), tuple(axes), keepdims=True))
    return ((xf - mean) / (std + 1e-9)).astype(x.dtype)


@op("LpNormalization", 1)
def LpNormalization(x, *, axis=-1, p=2):
    norm = jnp.linalg.norm(x.astype(_acc_dtype(x.dtype)), ord=p, axis=axis, keepdims=True)
    return (x / jnp.where(norm == 0, 1, norm)).astype(x.dtype)  # an all-zero slice stays zero


# Softmax family: before opset 13 the input is coerced to 2-D at `axis`, so the op spans all trailing axes.


@op("Softmax", 1)
def Softmax_1(x, *, axis=1):
    return softmax(x, _trailing_axes(x, axis))


@op("Softmax", 13)
def Softmax(x, *, axis=-1):
    return softmax(x, (axis,))


@op("LogSoftmax", 1)
def LogSoftmax_1(x, *, axis=1):
    return _log_softmax(x, _trailing_axes(x, axis))


@op("LogSoftmax", 13)
def LogSoftmax(x, *, axis=-1):
    return _log_softmax(x, (axis,))


def softmax(x, axes):
    """jax.nn.softmax; along a long or a short last axis its formula with reduce_trailing's folded reductions."""
    if not folds(x, axes):
        return jax.nn.softmax(x, axis=axes)
    unnormalized = jnp.exp(x - lax.stop_gradient(reduce_trailing(x, axes, "max")))
    return unnormalized / reduce_trailing(unnormalized, axes, "sum")


def _log_softmax(x, axes):
    if not folds(x, axes):
        return jax.nn.log_softmax(x, axis=axes)
    shifted = x - lax.stop_gradient(reduce_trailing(x, axes, "max"))
    return shifted - jnp.log(reduce_trailing(jnp.exp(shifted), axes, "sum"))


@op("Hardmax", 1)
def Hardmax_1(x, *, axis=1):
    axis %= x.ndim
    return jnp.reshape(Hardmax(jnp.reshape(x, x.shape[:axis] + (-1,))), x.shape)


@op("Hardmax", 13)
def Hardmax(x, *, axis=-1):
    """1 at the first maximum along `axis`, 0 elsewhere."""
    return jax.nn.one_hot(jnp.argmax(x, axis), x.shape[axis], dtype=x.dtype, axis=axis)


# Dropout: inference is a copy; only opset 12's training_mode input drops values, keyed by the seed attribute
# (or 0: without a seed the mask is the same on every run, not fresh randomness).


@op("Dropout", 1)
def Dropout_1(x, *, is_test=0, ratio=0.5):
    return Dropout_7(x)


@op("Dropout", 7)
def Dropout_7(x, *, ratio=0.5):
    return x, jnp.ones(jnp.shape(x), jnp.result_type(x))  # the mask is of x's type before opset 10


@op("Dropout", 10)
def Dropout_10(x, *, ratio=0.5):
    return x, jnp.ones(jnp.shape(x), bool)


@op("Dropout", 12, static=("ratio", "training_mode"))
def Dropout(x, ratio=None, training_mode=None, *, seed=None):
    ratio = 0.5 if ratio is None else float(ratio)
    if not training_mode or ratio == 0:
        return Dropout_10(x)
    keep = jax.random.bernoulli(jax.random.key(0 if seed is None else seed), 1 - ratio, jnp.shape(x))
    return jnp.where(keep, x * jnp.asarray(1 / (1 - ratio), x.dtype), 0), keep

"""Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and the integer/QLinear products."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import lax

from ..dtypes import is_float, to_numpy_dtype
from ..registry import op
from .nn import ConvChannelsLast, _padding

# Scales and zero points


def _broadcast_param(p, shape: tuple[int, ...], axis: int, block_size: int):
    """A scale or zero point shaped to broadcast against x: per tensor, per `axis`, or in blocks along `axis`."""
    if jnp.size(p) == 1:
        return jnp.reshape(p, ())
    axis %= len(shape)
    if block_size:
        return jnp.repeat(p, block_size, axis=axis, total_repeat_length=shape[axis])
    return jnp.reshape(p, (-1,) + (1,) * (len(shape) - axis - 1))


def _quantize(x, scale, zero_point, axis=1, saturate=1, block_size=0, output_dtype=0, precision=0):
    """saturate(round_half_even(x / scale) + zero_point) in the zero point's (or output_dtype's) type."""
    if zero_point is not None:
        dtype = np.dtype(zero_point.dtype)
    else:
        dtype = to_numpy_dtype(output_dtype) if output_dtype else np.dtype(np.uint8)
    # the division runs in `precision`, else in the scale's type (float32 for 8-bit scales such as float8e8m0)
    compute = to_numpy_dtype(precision) if precision else scale.dtype if scale.dtype.itemsize > 1 else np.float32
    scale = _broadcast_param(jnp.asarray(scale, compute), jnp.shape(x), axis, block_size)
    q = _quotient(jnp.asarray(x, compute), scale)
    zp = 0 if zero_point is None else _broadcast_param(zero_point, jnp.shape(x), axis, block_size)
    if not is_float(dtype):
        info = ml_dtypes.iinfo(dtype)
        q = jnp.round(q).astype(jnp.float32) + jnp.asarray(zp, jnp.float32)
        return jnp.clip(q, info.min, info.max).astype(dtype)
    q = q + jnp.asarray(zp, compute)
    if saturate:
        limit = float(ml_dtypes.finfo(dtype).max)
        q = jnp.clip(q, -limit, limit)
    return q.astype(dtype)


def _dequantize(x, scale, zero_point, axis=1, block_size=0, output_dtype=0):
    """(x - zero_point) * scale, computed in float32, in output_dtype or the scale's type."""
    y = jnp.asarray(x, jnp.float32)
    if zero_point is not None:
        y = y - _broadcast_param(jnp.asarray(zero_point, jnp.float32), jnp.shape(x), axis, block_size)
    y = y * _broadcast_param(jnp.asarray(scale, jnp.float32), jnp.shape(x), axis, block_size)
    return y.astype(to_numpy_dtype(output_dtype) if output_dtype else scale.dtype)


@op("QuantizeLinear", 10)
def QuantizeLinear_10(x, y_scale, y_zero_point=None):
    return _quantize(x, y_scale, y_zero_point)


@op("QuantizeLinear", 13)
def QuantizeLinear_13(x, y_scale, y_zero_point=None, *, axis=1):
    return _quantize(x, y_scale, y_zero_point, axis)


@op("QuantizeLinear", 19)
def QuantizeLinear_19(x, y_scale, y_zero_point=None, *, axis=1, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis, saturate)


@op("QuantizeLinear", 21)
def QuantizeLinear_21(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype)


@op("QuantizeLinear", 23)
def QuantizeLinear(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, precision=0, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis, saturate, block_size, output_dtype, precision)


@op("DequantizeLinear", 10)
def DequantizeLinear_10(x, x_scale, x_zero_point=None):
    return _dequantize(x, x_scale, x_zero_point)


@op("DequantizeLinear", 13)
def DequantizeLinear_13(x, x_scale, x_zero_point=None, *, axis=1):
    return _dequantize(x, x_scale, x_zero_point, axis)


@op("DequantizeLinear", 21)
def DequantizeLinear_21(x, x_scale, x_zero_point=None, *, axis=1, block_size=0):
    return _dequantize(x, x_scale, x_zero_point, axis, block_size)


@op("DequantizeLinear", 23)
def DequantizeLinear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    return _dequantize(x, x_scale, x_zero_point, axis, block_size, output_dtype)


@op("DynamicQuantizeLinear", 11)
def DynamicQuantizeLinear(x):
    """uint8 quantization over [min(x, 0), max(x, 0)]; returns y, its scale and its zero point."""
    low, high = jnp.minimum(jnp.min(x), 0), jnp.maximum(jnp.max(x), 0)
    scale = _quotient(jnp.where(high == low, 1, high - low).astype(jnp.float32), np.float32(255))
    zero_point = jnp.round(jnp.clip(_quotient(-low, scale), 0, 255))
    y = jnp.clip(jnp.round(_quotient(x, scale)) + zero_point, 0, 255)
    return y.astype(jnp.uint8), scale.astype(x.dtype), zero_point.astype(jnp.uint8)


def _quotient(a, b):
    """a / b correctly rounded on every platform. XLA's float32 division on GPUs is not (on an H200, 300,512 of
    2**20 random quotients differed from numpy's), and quantization rounds the quotient half to even, so a last-bit
    difference at a tie moves the integer (the official test_dynamicquantizelinear failed on CUDA)."""
    return lax.platform_dependent(a, b, cpu=jnp.divide, default=_wide_quotient)


def _wide_quotient(a, b):
    """The quotient in float64, rounded once to the operands' type: exactly that type's IEEE division."""
    return (a.astype(jnp.float64) / b.astype(jnp.float64)).astype(jnp.result_type(a, b))


# Integer products: int32 accumulation of zero-point-shifted operands


def _shifted(x, zero_point, zero_point_shape=None):
    """x - zero_point in int32; a vector zero point takes `zero_point_shape` first (per row, per channel)."""
    x = jnp.asarray(x, jnp.int32)
    if zero_point is None:
        return x
    zero_point = jnp.asarray(zero_point, jnp.int32)
    if zero_point_shape is not None and zero_point.ndim == 1:
        zero_point = jnp.reshape(zero_point, zero_point_shape)
    return x - zero_point


def _rows(v):
    """A per-row vector (one value per row of a matrix) as a column, so it broadcasts along rows."""
    return jnp.reshape(v, (-1, 1)) if jnp.ndim(v) == 1 else v


def _channels(v, ndim: int):
    """A per-output-channel vector shaped to broadcast against N x C x D1 x ... (a scalar stays a scalar)."""
    return jnp.reshape(v, (-1,) + (1,) * (ndim - 2)) if jnp.ndim(v) == 1 else v


def _requantize(acc, multiplier, zero_point):
    """An int32 accumulator scaled by `multiplier` and saturated into the zero point's type."""
    info = np.iinfo(zero_point.dtype)
    y = jnp.round(acc.astype(jnp.float32) * multiplier.astype(jnp.float32)) + jnp.asarray(zero_point, jnp.float32)
    return jnp.clip(y, info.min, info.max).astype(zero_point.dtype)


@op("MatMulInteger", 10)
def MatMulInteger(A, B, a_zero_point=None, b_zero_point=None):
    return jnp.matmul(_shifted(A, a_zero_point, (-1, 1)), _shifted(B, b_zero_point))


@op("QLinearMatMul", 10)
def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    acc = MatMulInteger(a, b, a_zero_point, b_zero_point)
    return _requantize(acc, _rows(a_scale) * b_scale / y_scale, y_zero_point)


@op("ConvInteger", 10)
def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None, group=1,
                kernel_shape=None, pads=None, strides=None):
    """Conv of the shifted operands; padding is zero after the shift, so it holds x_zero_point before it."""
    n = w.ndim - 2
    strides, dilations = tuple(strides or (1,) * n), tuple(dilations or (1,) * n)
    padding = _padding(auto_pad, pads, x.shape[2:], w.shape[2:], strides, dilations)
    conv = functools.partial(lax.conv_general_dilated, window_strides=strides, padding=padding,
                             rhs_dilation=dilations, feature_group_count=group)
    x, w = _shifted(x, x_zero_point), _shifted(w, w_zero_point, (-1,) + (1,) * (w.ndim - 1))
    cpu = functools.partial(_exact_float_conv, conv)
    if _exact_type(w) == jnp.float32:  # on CPU the float Conv's own paths: multiply-adds over few channels, ...
        cpu = functools.partial(_float32_conv, auto_pad=auto_pad, dilations=dilations, group=group, pads=pads,
                                strides=strides)
    return lax.platform_dependent(x, w, cpu=cpu, default=functools.partial(_exact_float_conv, conv))


def _exact_type(w):
    """The float type in which a convolution of shifted 8-bit operands (|x|, |w| <= 255) with this weight is exact:
    float32 while every sum stays below 2**24, else float64."""
    return jnp.float32 if math.prod(w.shape[1:]) * 255 * 255 < 2**24 else jnp.float64


def _exact_float_conv(conv, x, w):
    """The int32 convolution of shifted 8-bit operands in floating point, exact (`_exact_type`). XLA's GPU backend
    compiles integer convolutions of int8 operands only, and its CPU one runs int32 convolutions as plain loops
    (6-13x slower than float64 on 3x3 convolutions over 32-64 channels)."""
    exact = _exact_type(w)
    y = conv(x.astype(exact), w.astype(exact), precision=lax.Precision.HIGHEST)
    return y.astype(jnp.int32)


def _float32_conv(x, w, **attrs):
    """The same in float32 through the float Conv's CPU lowering (mnist-quantized's 5x5 convolution of one channel
    as multiply-adds: ~87 -> ~20 us)."""
    w_last = jnp.moveaxis(w.astype(jnp.float32), (0, 1), (-1, -2))
    return ConvChannelsLast(x.astype(jnp.float32), w_last, **attrs).astype(jnp.int32)


@op("QLinearConv", 10)
def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    acc = ConvInteger(x, w, x_zero_point, w_zero_point, auto_pad=auto_pad, dilations=dilations, group=group,
                      pads=pads, strides=strides)
    if B is not None:
        acc = acc + _channels(B, acc.ndim)
    return _requantize(acc, x_scale * _channels(w_scale, acc.ndim) / y_scale, y_zero_point)

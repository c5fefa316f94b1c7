"""Elementwise ops: arithmetic, math, comparison, logic, bitwise, activations, Cast, BitCast, Clip, Where."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import lax
from onnx import TensorProto

from ..compiler import is_static
from ..dtypes import is_float, to_numpy_dtype
from ..registry import op


def _legacy_broadcast(b, a_ndim: int, broadcast: int, axis: int | None):
    """Opset < 7 binary ops broadcast `b` onto `a` only when asked, aligned at `axis`."""
    if not broadcast or axis is None or jnp.ndim(b) == 0:
        return b
    axis = axis % a_ndim
    return jnp.reshape(b, jnp.shape(b) + (1,) * (a_ndim - axis - jnp.ndim(b)))


def _binary(name: str, fn):
    """Register a numpy-broadcasting binary op (opset 7), and its opset-1 form with `broadcast`/`axis` attributes."""

    def legacy(a, b, *, broadcast=0, axis=None):
        return fn(a, _legacy_broadcast(b, jnp.ndim(a), broadcast, axis))

    def modern(a, b):
        return fn(a, b)

    legacy.__name__, modern.__name__ = f"{name}_1", name
    op(name, 1)(legacy)
    op(name, 7)(modern)


def _div(a, b):
    if jnp.issubdtype(jnp.result_type(a), jnp.integer):
        return lax.div(*jnp.broadcast_arrays(a, b))  # truncates toward zero, like C
    return jnp.divide(a, b)


def _pow(x, y):
    dtype = jnp.result_type(x)
    if not is_float(dtype) and is_float(jnp.result_type(y)):  # integer base, float exponent: truncate the result
        return jnp.power(jnp.asarray(x, jnp.promote_types(jnp.result_type(y), jnp.float32)), y).astype(dtype)
    if is_float(dtype) and isinstance(y, np.ndarray) and y.size == 1 and y.ndim <= jnp.ndim(x):
        k = float(y.reshape(()))
        if k.is_integer() and 1 <= k <= 4:  # GELU's x**3: multiplications, not exp(3 log x)
            return lax.integer_pow(x, int(k))
    return jnp.power(x, jnp.asarray(y, dtype))


for _name, _fn in {
    "Add": jnp.add,
    "Sub": jnp.subtract,
    "Mul": jnp.multiply,
    "Div": _div,
    "Pow": _pow,
    "Equal": jnp.equal,
    "Less": jnp.less,
    "Greater": jnp.greater,
    "And": jnp.logical_and,
    "Or": jnp.logical_or,
    "Xor": jnp.logical_xor,
}.items():
    _binary(_name, _fn)


@op("Mod", 10)
def Mod(a, b, *, fmod=0):
    if fmod:
        return jnp.fmod(a, b)  # sign of the dividend, like C fmod
    if jnp.issubdtype(jnp.result_type(a), jnp.integer):  # x mod 0 is 0, as in numpy
        return jnp.where(b == 0, 0, jnp.remainder(a, jnp.where(b == 0, 1, b))).astype(jnp.result_type(a))
    return jnp.remainder(a, b)


def _simple(name: str, fn, since: int):
    """Register `fn` as an op whose inputs map straight onto its positional arguments."""

    def impl(*inputs):
        return fn(*inputs)

    impl.__name__ = name
    op(name, since)(impl)


for _name, (_fn, _since) in {
    "Abs": (jnp.abs, 1),
    "Neg": (jnp.negative, 1),
    "Exp": (jnp.exp, 1),
    "Log": (jnp.log, 1),
    "Sqrt": (jnp.sqrt, 1),
    "Reciprocal": (jnp.reciprocal, 1),
    "Floor": (jnp.floor, 1),
    "Ceil": (jnp.ceil, 1),
    "Sigmoid": (jax.nn.sigmoid, 1),
    "Tanh": (jnp.tanh, 1),
    "Relu": (jax.nn.relu, 1),
    "Softplus": (jax.nn.softplus, 1),
    "Softsign": (jax.nn.soft_sign, 1),
    "Not": (jnp.logical_not, 1),
    "Sin": (jnp.sin, 7),
    "Cos": (jnp.cos, 7),
    "Tan": (jnp.tan, 7),
    "Asin": (jnp.arcsin, 7),
    "Acos": (jnp.arccos, 7),
    "Atan": (jnp.arctan, 7),
    "Sinh": (jnp.sinh, 9),
    "Cosh": (jnp.cosh, 9),
    "Asinh": (jnp.arcsinh, 9),
    "Acosh": (jnp.arccosh, 9),
    "Atanh": (jnp.arctanh, 9),
    "Erf": (jax.scipy.special.erf, 9),
    "Sign": (jnp.sign, 9),
    "IsNaN": (jnp.isnan, 9),
    "Round": (jnp.round, 11),  # half to even, as the spec asks
    "LessOrEqual": (jnp.less_equal, 12),
    "GreaterOrEqual": (jnp.greater_equal, 12),
    "BitwiseNot": (jnp.bitwise_not, 18),
    "BitwiseAnd": (jnp.bitwise_and, 18),
    "BitwiseOr": (jnp.bitwise_or, 18),
    "BitwiseXor": (jnp.bitwise_xor, 18),
}.items():
    _simple(_name, _fn, _since)


@op("IsInf", 10)
def IsInf(x, *, detect_negative=1, detect_positive=1):
    return (jnp.isneginf(x) & bool(detect_negative)) | (jnp.isposinf(x) & bool(detect_positive))


@op("BitShift", 11)
def BitShift(X, Y, *, direction):
    # XLA shifts by >= the bit width (negative amounts included) give 0, or -1 for arithmetic right shifts of
    # negative values: exactly what opset 28 spells out.
    return jnp.left_shift(X, Y) if direction == "LEFT" else jnp.right_shift(X, Y)


def _variadic(name: str, fn):
    def impl(*inputs):
        return functools.reduce(fn, inputs)

    impl.__name__ = name
    op(name, 1)(impl)


_variadic("Sum", jnp.add)
_variadic("Max", jnp.maximum)
_variadic("Min", jnp.minimum)


@op("Mean", 1)
def Mean(*inputs):
    return (functools.reduce(jnp.add, inputs) / len(inputs)).astype(jnp.result_type(inputs[0]))


# Activations


@op("LeakyRelu", 1)
def LeakyRelu(X, *, alpha=0.01):
    return jnp.where(X >= 0, X, X * jnp.asarray(alpha, jnp.result_type(X)))


@op("PRelu", 1)
def PRelu(X, slope):
    x_shape = jnp.shape(X)
    if jnp.ndim(slope) == 1 and len(x_shape) > 2 and jnp.shape(slope)[0] == x_shape[1] != x_shape[-1]:
        slope = jnp.reshape(slope, (-1,) + (1,) * (len(x_shape) - 2))  # pre-7 per-channel slope
    return jnp.where(X >= 0, X, X * slope)


@op("Elu", 1)
def Elu(X, *, alpha=1.0):
    return jnp.where(X > 0, X, jnp.asarray(alpha, X.dtype) * jnp.expm1(X))


@op("Celu", 12)
def Celu(X, *, alpha=1.0):
    alpha = jnp.asarray(alpha, X.dtype)
    return jnp.maximum(X, 0) + jnp.minimum(0, alpha * jnp.expm1(X / alpha))


@op("Selu", 1)
def Selu_1(X, *, alpha=1.6732, gamma=1.0507):
    return Selu(X, alpha=alpha, gamma=gamma)


@op("Selu", 6)
def Selu(X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    alpha, gamma = jnp.asarray(alpha, X.dtype), jnp.asarray(gamma, X.dtype)
    return gamma * jnp.where(X > 0, X, alpha * jnp.expm1(X))


@op("ThresholdedRelu", 10)
def ThresholdedRelu(X, *, alpha=1.0):
    return jnp.where(X > alpha, X, jnp.zeros_like(X))


@op("HardSigmoid", 1)
def HardSigmoid(X, *, alpha=0.2, beta=0.5):
    return jnp.clip(X * jnp.asarray(alpha, X.dtype) + jnp.asarray(beta, X.dtype), 0, 1)


@op("HardSwish", 14)
def HardSwish(X):
    return X * HardSigmoid(X, alpha=1 / 6, beta=0.5)


@op("Mish", 18)
def Mish(X):
    return X * jnp.tanh(jax.nn.softplus(X))


@op("Swish", 24)
def Swish(X, *, alpha=1.0):
    return X * jax.nn.sigmoid(jnp.asarray(alpha, X.dtype) * X)


@op("SwiGLU", 28)
def SwiGLU(A, B, *, alpha=1.0):
    return Swish(A, alpha=alpha) * B


@op("Gelu", 20)
def Gelu(X, *, approximate="none"):
    return gelu(X, approximate == "tanh")


def gelu(x, approximate: bool = False):
    """The spec's 0.5x(1 + erf(x/sqrt2)), as onnxruntime computes it. jax.nn.gelu's exact form goes through erfc,
    which evaluates three approximations per element: BERT's GELU fusions took twice as long."""
    if approximate:
        return jax.nn.gelu(x, approximate=True)
    return 0.5 * x * (1 + lax.erf(x * np.asarray(np.sqrt(0.5), x.dtype)))


@op("Shrink", 9)
def Shrink(input, *, bias=0.0, lambd=0.5):
    x = jnp.asarray(input)  # a Python-float bias keeps float inputs' dtype; integer inputs are truncated back
    return jnp.where(x < -lambd, x + bias, jnp.where(x > lambd, x - bias, 0)).astype(x.dtype)


@op("Clip", 1)
def Clip_1(input, *, min=None, max=None):
    return Clip(input, min, max)


@op("Clip", 6)
def Clip_6(input, *, min=-3.4028234663852886e38, max=3.4028234663852886e38):
    return Clip(input, min, max)


@op("Clip", 11)
def Clip(input, min=None, max=None):
    if min is not None:
        input = jnp.maximum(input, min)
    if max is not None:
        input = jnp.minimum(input, max)
    return input


@op("Where", 9)
def Where(condition, X, Y):
    return jnp.where(condition, X, Y)


# Cast

_FLOAT8 = frozenset(
    np.dtype(t)
    for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)
)
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


def _narrow_float(dtype: np.dtype) -> bool:
    return is_float(dtype) and np.dtype(dtype).itemsize == 1


def _cast(x, dtype: np.dtype, saturate: int, round_mode: str):
    x = jnp.asarray(x)
    if _narrow_float(x.dtype) or (_narrow_float(dtype) and not is_float(x.dtype)):
        x = x.astype(jnp.float32)  # exact; XLA converts float4 to integers wrongly
    if dtype == _E8M0:
        return _to_float8e8m0(x, saturate, round_mode)
    if saturate and dtype in _FLOAT8:
        limit = float(ml_dtypes.finfo(dtype).max)
        x = jnp.clip(x, -limit, limit)
    elif is_float(x.dtype) and jnp.issubdtype(dtype, jnp.integer) and dtype.itemsize < 8:
        x = x.astype(jnp.int64)  # out of range values then wrap around like numpy's, instead of saturating
    return x.astype(dtype)


def _to_float8e8m0(x, saturate: int, round_mode: str):
    """float32 -> float8e8m0 (a biased exponent) with the spec's rounding; the sign is ignored, NaN and inf give NaN."""
    bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    exponent = (bits >> 23) & 0xFF
    if round_mode == "up":
        round_up = (bits & 0x7FFFFF) > 0
    elif round_mode == "nearest":  # guard bit set, and any lower bit or a nonzero exponent
        round_up = ((bits & 0x400000) > 0) & (((bits & 0x3FFFFF) > 0) | (exponent > 0))
    elif round_mode == "down":
        round_up = jnp.zeros_like(exponent, bool)
    else:
        raise ValueError(f"round_mode must be 'up', 'down' or 'nearest', got {round_mode!r}")
    if saturate:
        round_up &= exponent != 0xFE
    exponent = jnp.where(exponent == 0xFF, exponent, exponent + round_up)
    return lax.bitcast_convert_type(exponent.astype(jnp.uint8), _E8M0)


@op("Cast", 1)
def Cast_1(input, *, to):
    return Cast(input, to=TensorProto.DataType.Value(to.upper()))  # opset 1 names the type as a string


@op("Cast", 6)
def Cast(input, *, to, saturate=1, round_mode="up"):
    return _cast(input, to_numpy_dtype(to), saturate, round_mode)


@op("CastLike", 15)
def CastLike(input, target_type, *, saturate=1, round_mode="up"):
    return _cast(input, np.dtype(jnp.result_type(target_type)), saturate, round_mode)


@op("BitCast", 26)
def BitCast(input, *, to):
    x, dtype = jnp.asarray(input), to_numpy_dtype(to)
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)  # XLA cannot bitcast predicates: go through their bytes, 0 and 1
    if dtype == np.bool_:
        return lax.bitcast_convert_type(x, np.uint8) != 0
    if jnp.iscomplexobj(x):
        x = jnp.stack([x.real, x.imag], axis=-1)
    if dtype.kind == "c":
        parts = lax.bitcast_convert_type(x, np.dtype(f"f{dtype.itemsize // 2}"))
        return lax.complex(parts[..., 0], parts[..., 1])
    return lax.bitcast_convert_type(x, dtype)


@op("Materialized", 1, domain="onnx_jax")
def Materialized(x, *, channels_last=0):
    """`x` itself, written out once and read back (made by onnx_jax.optimize for an activation that a convolution or
    matmul reads beside other nodes). XLA's CPU fusion recomputes a cheap elementwise value inside each fusible reader,
    and those readers' values inside theirs: down a ResNet stage every block's residual sum re-read the outputs of all
    the blocks before it. A division is an op it does not duplicate, and x / 1 is exact; the ones are made from x
    (1 where x * 0 is 0 or NaN) so that XLA can neither fold them nor hoist one reciprocal out of a loop.
    `channels_last`: x is the channels-first view of channels-last convolution outputs, divided in their layout. Other
    types than float32 pass as they are (XLA's CPU division of bfloat16 flushes its subnormals to zero)."""
    if is_static(x) or jnp.result_type(x) != np.float32:
        return x
    moved = channels_last and x.ndim >= 3
    y = jnp.moveaxis(x, 1, -1) if moved else x
    zero = y * 0  # 0, or NaN where y is infinite or NaN
    y = y / jnp.where(zero == 0, zero + 1, 1).astype(y.dtype)
    return jnp.moveaxis(y, -1, 1) if moved else y

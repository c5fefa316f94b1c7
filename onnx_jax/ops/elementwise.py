"""Elementwise ops: arithmetic, math, comparison, logic, bitwise, activations, Cast, Clip, Where."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import is_float, to_numpy_dtype
from ..registry import op


def _legacy_broadcast(b, a_ndim: int, broadcast: int, axis: int | None):
    """Opset < 7 binary ops broadcast `b` onto `a` only when asked, aligned at `axis`."""
    if not broadcast or axis is None or b.ndim == 0:
        return b
    axis = axis % a_ndim
    return jnp.reshape(b, b.shape + (1,) * (a_ndim - axis - b.ndim))


def _binary(name: str, fn, since: tuple[int, ...] = (7,)):
    """Register a numpy-broadcasting binary op, plus its opset-1/6 form with `broadcast`/`axis` attributes."""

    def legacy(a, b, *, broadcast=0, axis=None):
        return fn(a, _legacy_broadcast(b, jnp.ndim(a), broadcast, axis))

    def modern(a, b):
        return fn(a, b)

    legacy.__name__ = modern.__name__ = name
    op(name, 1)(legacy)
    for version in since:
        op(name, version)(modern)


def _div(a, b):
    if jnp.issubdtype(jnp.result_type(a), jnp.integer):
        return lax.div(jnp.asarray(a), jnp.asarray(b))  # truncates toward zero, like C
    return jnp.divide(a, b)


_binary("Add", jnp.add)
_binary("Sub", jnp.subtract)
_binary("Mul", jnp.multiply)
_binary("Div", _div)


@op("Pow", 1)
def Pow_1(x, y, *, broadcast=0, axis=None):
    return Pow(x, _legacy_broadcast(y, jnp.ndim(x), broadcast, axis))


@op("Pow", 7)
def Pow(x, y):
    dtype = jnp.result_type(x)
    if not is_float(dtype) and is_float(jnp.result_type(y)):
        return jnp.power(jnp.asarray(x, jnp.result_type(y)), y).astype(dtype)
    return jnp.power(x, jnp.asarray(y, dtype))


@op("Mod", 10)
def Mod(a, b, *, fmod=0):
    if fmod:
        return lax.rem(jnp.asarray(a), jnp.asarray(b))  # sign of the dividend, like C fmod
    if jnp.issubdtype(jnp.result_type(a), jnp.integer):
        return jnp.where(b == 0, 0, jnp.remainder(a, jnp.where(b == 0, 1, b))).astype(jnp.result_type(a))
    return jnp.remainder(a, b)


def _unary(name: str, fn, *versions: int):
    def impl(x):
        return fn(x)

    impl.__name__ = name
    for version in versions or (1,):
        op(name, version)(impl)


for _name, _fn in {
    "Abs": jnp.abs,
    "Neg": jnp.negative,
    "Exp": jnp.exp,
    "Log": jnp.log,
    "Sqrt": jnp.sqrt,
    "Reciprocal": jnp.reciprocal,
    "Floor": jnp.floor,
    "Ceil": jnp.ceil,
    "Sigmoid": jax.nn.sigmoid,
    "Tanh": jnp.tanh,
    "Relu": jax.nn.relu,
}.items():
    _unary(_name, _fn)

for _name, _fn in {
    "Sin": jnp.sin,
    "Cos": jnp.cos,
    "Tan": jnp.tan,
    "Asin": jnp.arcsin,
    "Acos": jnp.arccos,
    "Atan": jnp.arctan,
    "Sinh": jnp.sinh,
    "Cosh": jnp.cosh,
    "Asinh": jnp.arcsinh,
    "Acosh": jnp.arccosh,
    "Atanh": jnp.arctanh,
    "Erf": jax.scipy.special.erf,
    "Sign": jnp.sign,
    "Round": jnp.round,  # half to even, as the spec asks
    "Softplus": jax.nn.softplus,
    "Softsign": jax.nn.soft_sign,
    "Not": jnp.logical_not,
    "BitwiseNot": jnp.bitwise_not,
    "IsNaN": jnp.isnan,
}.items():
    _unary(_name, _fn)


@op("IsInf", 10)
def IsInf(x, *, detect_negative=1, detect_positive=1):
    return ((x == -jnp.inf) & bool(detect_negative)) | ((x == jnp.inf) & bool(detect_positive))


for _name, _fn in {
    "Equal": jnp.equal,
    "Less": jnp.less,
    "Greater": jnp.greater,
    "And": jnp.logical_and,
    "Or": jnp.logical_or,
    "Xor": jnp.logical_xor,
}.items():
    _binary(_name, _fn)

for _name, _fn in {
    "LessOrEqual": jnp.less_equal,
    "GreaterOrEqual": jnp.greater_equal,
    "BitwiseAnd": jnp.bitwise_and,
    "BitwiseOr": jnp.bitwise_or,
    "BitwiseXor": jnp.bitwise_xor,
}.items():
    op(_name, 1)(functools.wraps(_fn)(lambda a, b, _fn=_fn: _fn(a, b)))


@op("BitShift", 11)
def BitShift(x, y, *, direction):
    return jnp.left_shift(x, y) if direction == "LEFT" else jnp.right_shift(x, y)


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
def LeakyRelu(x, *, alpha=0.01):
    return jnp.where(x >= 0, x, x * jnp.asarray(alpha, jnp.result_type(x)))


@op("PRelu", 1)
def PRelu(x, slope):
    if slope.ndim == 1 and jnp.ndim(x) > 2 and slope.shape[0] == jnp.shape(x)[1] and slope.shape[0] != jnp.shape(x)[-1]:
        slope = jnp.reshape(slope, (-1,) + (1,) * (jnp.ndim(x) - 2))  # pre-7 per-channel slope
    return jnp.where(x >= 0, x, x * slope)


@op("Elu", 1)
def Elu(x, *, alpha=1.0):
    return jnp.where(x > 0, x, jnp.asarray(alpha, x.dtype) * jnp.expm1(x))


@op("Celu", 12)
def Celu(x, *, alpha=1.0):
    return jnp.maximum(x, 0) + jnp.minimum(0, alpha * jnp.expm1(x / alpha)).astype(x.dtype)


@op("Selu", 1)
def Selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    alpha, gamma = jnp.asarray(alpha, x.dtype), jnp.asarray(gamma, x.dtype)
    return gamma * jnp.where(x > 0, x, alpha * jnp.expm1(x))


@op("ThresholdedRelu", 10)
def ThresholdedRelu(x, *, alpha=1.0):
    return jnp.where(x > alpha, x, jnp.zeros_like(x))


@op("HardSigmoid", 1)
def HardSigmoid(x, *, alpha=0.2, beta=0.5):
    return jnp.clip(x * jnp.asarray(alpha, x.dtype) + jnp.asarray(beta, x.dtype), 0, 1)


@op("HardSwish", 14)
def HardSwish(x):
    return x * HardSigmoid(x, alpha=1 / 6, beta=0.5)


@op("Mish", 18)
def Mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


@op("Swish", 24)
def Swish(x, *, alpha=1.0):
    return x * jax.nn.sigmoid(jnp.asarray(alpha, x.dtype) * x)


@op("Gelu", 20)
def Gelu(x, *, approximate="none"):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@op("Shrink", 9)
def Shrink(x, *, bias=0.0, lambd=0.5):
    bias = jnp.asarray(bias, x.dtype)
    return jnp.where(x < -lambd, x + bias, jnp.where(x > lambd, x - bias, jnp.zeros_like(x)))


@op("Clip", 1)
def Clip_1(x, *, min=-3.4028234663852886e38, max=3.4028234663852886e38):
    return jnp.clip(x, jnp.asarray(min, x.dtype), jnp.asarray(max, x.dtype))


@op("Clip", 11)
def Clip(x, min=None, max=None):
    if min is not None:
        x = jnp.maximum(x, min)
    if max is not None:
        x = jnp.minimum(x, max)
    return x


@op("Where", 9)
def Where(condition, x, y):
    return jnp.where(condition, x, y)


# Cast


def _cast(x, dtype: np.dtype, saturate: int):
    x = jnp.asarray(x)
    if saturate and is_float(dtype) and jnp.finfo(dtype).bits <= 8 and is_float(x.dtype):
        limit = float(jnp.finfo(dtype).max)
        x = jnp.where(jnp.isinf(x) | (jnp.abs(x) > limit), jnp.clip(x, -limit, limit), x)
    return x.astype(dtype)


@op("Cast", 1)
def Cast(x, *, to, saturate=1, round_mode="up"):
    return _cast(x, to_numpy_dtype(to), saturate)


@op("CastLike", 15)
def CastLike(x, target_type, *, saturate=1, round_mode="up"):
    return _cast(x, jnp.result_type(target_type), saturate)

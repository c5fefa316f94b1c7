"""Random ops: RandomNormal, RandomUniform, their -Like forms, Bernoulli, Multinomial.

A `seed` attribute makes the draw deterministic (a jax.random key from its float32 bits); without one, a seed
is drawn when the graph is traced. The key is part of the compiled program, so a prepared model repeats its
draws on every run. Registered with fold=False so they are never folded into constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..dtypes import to_numpy_dtype
from ..registry import op


def _key(seed: float | None) -> jax.Array:
    if seed is None:
        seed = np.random.default_rng().random()
    return jax.random.key(int(np.float32(seed).view(np.uint32)))


def _like_dtype(x, dtype: int | None) -> np.dtype:
    return to_numpy_dtype(dtype) if dtype is not None else np.dtype(x.dtype)


def _normal(shape, dtype, mean: float, scale: float, seed: float | None):
    return (jax.random.normal(_key(seed), tuple(shape), dtype) * scale + mean).astype(dtype)


def _uniform(shape, dtype, low: float, high: float, seed: float | None):
    return jax.random.uniform(_key(seed), tuple(shape), dtype, low, high)


@op("RandomNormal", 1, fold=False)
def RandomNormal(*, dtype=1, mean=0.0, scale=1.0, seed=None, shape):
    return _normal(shape, to_numpy_dtype(dtype), mean, scale, seed)


@op("RandomUniform", 1, fold=False)
def RandomUniform(*, dtype=1, high=1.0, low=0.0, seed=None, shape):
    return _uniform(shape, to_numpy_dtype(dtype), low, high, seed)


@op("RandomNormalLike", 1, fold=False)
def RandomNormalLike(input, *, dtype=None, mean=0.0, scale=1.0, seed=None):
    return _normal(jnp.shape(input), _like_dtype(input, dtype), mean, scale, seed)


@op("RandomUniformLike", 1, fold=False)
def RandomUniformLike(input, *, dtype=None, high=1.0, low=0.0, seed=None):
    return _uniform(jnp.shape(input), _like_dtype(input, dtype), low, high, seed)


@op("Bernoulli", 15, fold=False)
def Bernoulli(input, *, dtype=None, seed=None):
    """1 with probability `input`, else 0."""
    draws = jax.random.uniform(_key(seed), jnp.shape(input), jnp.result_type(input))
    return (draws < input).astype(_like_dtype(input, dtype))


@op("Multinomial", 7, fold=False)
def Multinomial(input, *, dtype=6, sample_size=1, seed=None):
    """sample_size class indices per batch row, drawn from the row's unnormalized log-probabilities."""
    samples = jax.random.categorical(_key(seed), input, axis=-1, shape=(sample_size, jnp.shape(input)[0]))
    return samples.T.astype(to_numpy_dtype(dtype))

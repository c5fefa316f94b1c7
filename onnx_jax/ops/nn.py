"""Neural-network ops: MatMul, Gemm, convolution, pooling, normalization, softmax."""

from __future__ import annotations

import jax.numpy as jnp

from ..registry import op


@op("MatMul", 1)
def MatMul(a, b):
    return jnp.matmul(a, b)


@op("Gemm", 1)
def Gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * jnp.matmul(a, b) if alpha != 1.0 else jnp.matmul(a, b)
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return y.astype(jnp.result_type(a))

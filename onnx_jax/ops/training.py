"""Optimizer ops of ai.onnx.preview.training: one update step for n tensors at once."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..graph import ValueInfo
from ..registry import op

TRAINING = "ai.onnx.preview.training"


def _groups(inputs: tuple, count: int) -> list[tuple]:
    """Split X1..Xn, G1..Gn, ... into `count` groups of n."""
    n = len(inputs) // count
    return [inputs[i * n : (i + 1) * n] for i in range(count)]


@op("Adagrad", 1, domain=TRAINING)
def Adagrad(R, T, *inputs, decay_factor=0.0, epsilon=1e-6, norm_coefficient=0.0):
    xs, gs, hs = _groups(inputs, 3)
    rate = R / (1 + T * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g = norm_coefficient * x + g
        h = h + g * g
        new_x.append((x - rate * g / (jnp.sqrt(h) + epsilon)).astype(x.dtype))
        new_h.append(h.astype(x.dtype))
    return (*new_x, *new_h)


@op("Momentum", 1, domain=TRAINING)
def Momentum(R, T, *inputs, alpha, beta, mode, norm_coefficient):
    xs, gs, vs = _groups(inputs, 3)
    beta = jnp.where(T > 0, beta, 1.0)  # the first step takes the whole gradient
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g = norm_coefficient * x + g
        v = alpha * v + beta * g
        step = g + alpha * v if mode == "nesterov" else v
        new_x.append((x - R * step).astype(x.dtype))
        new_v.append(v.astype(x.dtype))
    return (*new_x, *new_v)


@op("Adam", 1, domain=TRAINING)
def Adam(R, T, *inputs, alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0, norm_coefficient_post=0.0):
    xs, gs, vs, hs = _groups(inputs, 4)
    rate = jnp.where(T > 0, R * jnp.sqrt(1 - beta**T) / (1 - alpha**T), R)  # bias correction after step 0
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g = norm_coefficient * x + g
        v = alpha * v + (1 - alpha) * g
        h = beta * h + (1 - beta) * g * g
        x_new = (x - rate * v / (jnp.sqrt(h) + epsilon)) * (1 - norm_coefficient_post)
        new_x.append(x_new.astype(x.dtype))
        new_v.append(v.astype(x.dtype))
        new_h.append(h.astype(x.dtype))
    return (*new_x, *new_v, *new_h)


@op("Gradient", 1, domain=TRAINING, context=True, fold=False)
def Gradient(*inputs, xs, y, zs=None, ctx):
    """dy/dx for each x in xs: jax.vjp (with ones) over the nodes before this one, recomputed from xs."""
    graph = ctx.program.graph
    before = dataclasses.replace(
        graph, nodes=graph.nodes[: graph.nodes.index(ctx.node)], outputs=(ValueInfo(y),)
    )

    def compute_y(*values):
        return ctx.program.evaluate(before, {**ctx.env, **dict(zip(xs, values))})[0]

    out, pullback = jax.vjp(compute_y, *(jnp.asarray(ctx.env[x]) for x in xs))
    return pullback(jnp.ones_like(out))

"""The model as a pure JAX function: `fn, params = to_jax(model)`; then jit, grad, vmap, export."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from .compiler import Program
from .dtypes import check_precision, x64
from .errors import InvalidInputError
from .graph import ModelLike, read_graph
from .registry import REGISTRY, Registry


def to_jax(
    model: ModelLike,
    *,
    freeze: bool | Iterable[str] = False,
    fold_weights: bool = False,
    registry: Registry = REGISTRY,
    precision: str = "highest",
) -> tuple[Callable[..., tuple[jax.Array, ...]], dict[str, jax.Array]]:
    """A pure function `fn(params, *inputs, **named_inputs)` of the model, and its float weights as `params`.

    `params` maps initializer names to arrays: only floating-point weights that the graph uses as data.
    Integer and shape constants stay constants, so `jax.grad` over the whole pytree works.
    `freeze=True` (or a list of names) keeps those weights out of `params` as fixed arrays;
    `fold_weights=True` turns every weight into a trace-time constant (XLA may fold it), leaving `params` empty.
    Outputs are a tuple in graph-output order. `precision` is the matmul/convolution precision traced into `fn`
    (see onnx_jax.prepare): full float32 unless asked otherwise.
    """
    check_precision(precision)
    program = Program(read_graph(model), registry, fold_weights=fold_weights)
    frozen_names = set(program.params) if freeze is True else set(freeze or ())
    unknown = frozen_names - set(program.params)
    if unknown:
        raise ValueError(f"freeze: {sorted(unknown)} are not float weights of the model; they are {sorted(program.params)}")
    with x64():
        weights = {name: jnp.asarray(value) for name, value in program.params.items()}
    frozen = {n: w for n, w in weights.items() if n in frozen_names}
    params = {n: w for n, w in weights.items() if n not in frozen_names}
    names = program.input_names

    def fn(params: dict[str, Any], *inputs: Any, **named: Any) -> tuple[jax.Array, ...]:
        if len(inputs) > len(names):
            raise InvalidInputError(f"the model takes {len(names)} input(s) {list(names)}, got {len(inputs)}")
        values = dict(zip(names, inputs))
        clash = values.keys() & named.keys()
        missing = [n for n in names if n not in values and n not in named]
        if clash or missing or named.keys() - set(names):
            raise InvalidInputError(
                f"inputs must be {list(names)} (positional, or by name); "
                f"given twice: {sorted(clash)}, missing: {missing}, unknown: {sorted(named.keys() - set(names))}"
            )
        with x64(precision):
            return program({**frozen, **params}, {**values, **named})

    fn.__doc__ = f"The ONNX graph {program.graph.name!r}: fn(params, {', '.join(names)})."
    return fn, params

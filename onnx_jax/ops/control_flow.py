"""Control flow: If -> Python choice or lax.cond, Loop -> lax.scan / lax.while_loop, Scan -> lax.scan.

Subgraphs run through `ctx.run_subgraph`, so they see the outer scope by name and nest to any depth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..compiler import is_static
from ..errors import DataDependentShapeError, NodeExecutionError, StaticValueRequiredError
from ..registry import op

MAX_TRACE_TIME_ITERATIONS = 1000  # a Loop evaluated in Python (carried shapes change) may not run longer

# A body that XLA cannot loop over: carried shapes change each iteration (TypeError from lax), or the body
# needs the iteration number as a constant (a Slice by the counter, SequenceAt over differently shaped items).
NEEDS_TRACE_TIME_ITERATION = (TypeError, StaticValueRequiredError, NodeExecutionError)


def _traced(value):
    """A value a loop can carry: numpy becomes jax, sequences and empty optionals keep their structure."""
    return jax.tree.map(jnp.asarray, value)


def _scalar_bool(cond):
    return jnp.reshape(jnp.asarray(cond), ()).astype(bool)


@op("If", 1, context=True, fold=False)
def If(cond, *, then_branch, else_branch, ctx):
    if is_static(cond):
        return ctx.run_subgraph(then_branch if bool(np.reshape(cond, ())) else else_branch)
    try:
        return lax.cond(
            _scalar_bool(cond),
            lambda: _traced(ctx.run_subgraph(then_branch)),
            lambda: _traced(ctx.run_subgraph(else_branch)),
        )
    except TypeError as e:
        raise DataDependentShapeError(
            ctx.node.name, "If", f"the branches give outputs of different shapes or types, chosen at run time: {e}"
        ) from e


def _has_scan_outputs(node) -> bool:
    body = node.attrs["body"]
    return len(body.outputs) > len(body.inputs) - 1


def _loop_static_inputs(node) -> tuple[str, ...]:
    """Scan outputs and carried sequences need the trip count when compiling: then M and cond are keyed
    into the signature. Otherwise they stay run-time values and the loop is a lax.while_loop."""
    carries_sequences = any(i.kind != "tensor" for i in node.attrs["body"].inputs[2:])
    return ("M", "cond") if _has_scan_outputs(node) or carries_sequences else ()


@op("Loop", 1, context=True, fold=False, static_if=_loop_static_inputs)
def Loop(M=None, cond=None, *v_initial, body, ctx):
    n = len(v_initial)

    def step(i, c, carried):
        outs = ctx.run_subgraph(body, i, c, *carried)
        return outs[0], list(outs[1 : 1 + n]), list(outs[1 + n :])

    trip = int(np.reshape(M, ())) if M is not None and is_static(M) else None
    if trip is not None and trip > np.iinfo(np.int32).max:
        trip = None  # exporters spell "no limit" as INT64_MAX
    static_cond = cond is None or is_static(cond)
    if trip is not None and (cond is None or (static_cond and bool(np.reshape(cond, ())))):
        result = _scan_loop(step, trip, list(v_initial))
        if result is not None:
            return result
    if not _has_scan_outputs(ctx.node):
        try:
            return _while_loop(step, trip, M, cond, list(v_initial))
        except NEEDS_TRACE_TIME_ITERATION:
            pass
    if static_cond and (trip is not None or cond is not None):
        return _python_loop(step, trip, cond, list(v_initial), ctx)
    raise DataDependentShapeError(
        ctx.node.name, "Loop", "its scan outputs or carried shapes depend on a trip count known only at run time"
    )


def _scan_loop(step, trip: int, carried: list):
    """lax.scan when the body never ends the loop early; None when it may (or when carried shapes change)."""
    always_true = []

    def body_fn(carry, _):
        i, values = carry
        c, new, scans = step(i, np.array(True), values)
        always_true.append(is_static(c) and bool(np.reshape(c, ())))
        return (i + 1, _traced(new)), _traced(scans)

    try:
        (_, final), stacked = lax.scan(body_fn, (jnp.asarray(0, jnp.int64), _traced(carried)), length=trip)
    except NEEDS_TRACE_TIME_ITERATION:
        return None
    return (*final, *stacked) if all(always_true) else None


def _while_loop(step, trip, M, cond, carried: list):
    """lax.while_loop for a data-dependent trip count (no scan outputs)."""
    limit = None if M is None else (trip if trip is not None else jnp.reshape(M, ()))

    def keep_going(state):
        i, c, _ = state
        return c if limit is None else c & (i < limit)

    def body_fn(state):
        i, c, values = state
        c, new, _ = step(i, c, values)
        return i + 1, _scalar_bool(c), _traced(new)

    start = (jnp.asarray(0, jnp.int64), jnp.asarray(True) if cond is None else _scalar_bool(cond), _traced(carried))
    _, _, final = lax.while_loop(keep_going, body_fn, start)
    return tuple(final)


def _python_loop(step, trip, cond, carried: list, ctx):
    """Trace-time iteration, only for bodies no XLA loop can express (see NEEDS_TRACE_TIME_ITERATION)."""
    c = np.array(True) if cond is None else cond
    scans, i = [], 0
    while (trip is None or i < trip) and bool(np.reshape(c, ())):
        if i >= MAX_TRACE_TIME_ITERATIONS:
            raise DataDependentShapeError(ctx.node.name, "Loop", f"more than {i} iterations with changing shapes")
        c, carried, outs = step(np.array(i, np.int64), c, carried)
        if not is_static(c):
            raise DataDependentShapeError(ctx.node.name, "Loop", "carried shapes change and the loop ends at run time")
        scans.append(outs)
        i += 1
    stacked = [jnp.stack(column) for column in zip(*scans)] if scans else []
    if not scans and _has_scan_outputs(ctx.node):
        raise DataDependentShapeError(ctx.node.name, "Loop", "zero iterations: scan output shapes are unknown")
    return (*carried, *stacked)


@op("Scan", 9, context=True, fold=False)
def Scan(*inputs, body, num_scan_inputs, scan_input_axes=None, scan_input_directions=None,
         scan_output_axes=None, scan_output_directions=None, ctx):
    n_state = len(inputs) - num_scan_inputs
    states, xs = inputs[:n_state], inputs[n_state:]
    in_axes = scan_input_axes or (0,) * len(xs)
    in_dirs = scan_input_directions or (0,) * len(xs)
    xs = [_time_major(x, axis, d) for x, axis, d in zip(xs, in_axes, in_dirs)]

    def body_fn(carry, x):
        outs = ctx.run_subgraph(body, *carry, *x)
        return _traced(tuple(outs[:n_state])), _traced(tuple(outs[n_state:]))

    final, ys = lax.scan(body_fn, _traced(tuple(states)), tuple(xs))
    out_axes = scan_output_axes or (0,) * len(ys)
    out_dirs = scan_output_directions or (0,) * len(ys)
    return (*final, *(_from_time_major(y, axis, d) for y, axis, d in zip(ys, out_axes, out_dirs)))


def _time_major(x, axis: int, direction: int):
    x = jnp.moveaxis(x, axis, 0)
    return jnp.flip(x, 0) if direction else x


def _from_time_major(y, axis: int, direction: int):
    y = jnp.flip(y, 0) if direction else y
    return jnp.moveaxis(y, 0, axis % y.ndim)


@op("Scan", 8, context=True, fold=False)
def Scan_8(sequence_lens, *inputs, body, num_scan_inputs, directions=None, ctx):
    """Opset 8: a leading batch axis; every sequence must run its full length."""
    if sequence_lens is not None:
        raise DataDependentShapeError(ctx.node.name, "Scan", "opset-8 sequence_lens is not supported")
    return jax.vmap(
        lambda *xs: Scan(*xs, body=body, num_scan_inputs=num_scan_inputs, scan_input_directions=directions, ctx=ctx)
    )(*inputs)

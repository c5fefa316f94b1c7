"""Recurrent ops: RNN, GRU, LSTM, each one lax.scan over time that runs all its directions at once (the scan and
the LSTM step are shared with com.microsoft's DynamicQuantizeLSTM, ops/microsoft.py)."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
from jax import lax

from ..registry import op

# name -> (f(x, a=alpha, b=beta), how many of alpha, beta it takes); defaults are those of the ONNX op of that name.
_ACTIVATIONS = {
    "relu": (jax.nn.relu, 0),
    "tanh": (jnp.tanh, 0),
    "sigmoid": (jax.nn.sigmoid, 0),
    "softsign": (jax.nn.soft_sign, 0),
    "softplus": (jax.nn.softplus, 0),
    "leakyrelu": (lambda x, a=0.01: jnp.where(x >= 0, x, x * a), 1),
    "thresholdedrelu": (lambda x, a=1.0: jnp.where(x > a, x, 0), 1),
    "elu": (lambda x, a=1.0: jnp.where(x >= 0, x, a * jnp.expm1(x)), 1),
    "affine": (lambda x, a=1.0, b=0.0: x * a + b, 2),
    "scaledtanh": (lambda x, a=1.0, b=1.0: a * jnp.tanh(b * x), 2),
    "hardsigmoid": (lambda x, a=0.2, b=0.5: jnp.clip(x * a + b, 0, 1), 2),
}


def _activations(names, alphas, betas, per_direction: int, num_directions: int) -> list:
    """The op's activation functions (f, g, ...), each applied to arrays with a leading direction axis."""
    alphas, betas = list(alphas or ()), list(betas or ())
    specs = []
    for name in names:
        fn, takes = _ACTIVATIONS[name.lower()]
        # alpha and beta are consumed in order, only by the activations that take them (as onnxruntime does)
        params = {"a": alphas.pop(0)} if takes >= 1 and alphas else {}
        if takes >= 2 and betas:
            params["b"] = betas.pop(0)
        specs.append((fn, tuple(params.items())))
    if len(specs) < per_direction * num_directions:
        specs = specs[:per_direction] * num_directions
    return [_per_direction(specs[i : per_direction * num_directions : per_direction]) for i in range(per_direction)]


def _per_direction(specs):
    if len(set(specs)) == 1:
        fn, params = specs[0]
        return lambda x: fn(x, **dict(params))
    return lambda x: jnp.stack([fn(x[d], **dict(params)) for d, (fn, params) in enumerate(specs)])


def _directions(direction: str) -> tuple[bool, ...]:
    """Whether each direction runs backwards in time: forward first."""
    # GRU-1's schema spells its default direction "foward"
    return {"forward": (False,), "foward": (False,), "reverse": (True,), "bidirectional": (False, True)}[direction]


def _flip_time(x, reverse: tuple[bool, ...]):
    """Reverse time (axis 0) for the directions (axis 1) that run backwards; its own inverse."""
    if not any(reverse):
        return x
    if all(reverse):
        return x[::-1]
    return jnp.stack([x[::-1, d] if r else x[:, d] for d, r in enumerate(reverse)], axis=1)


def _in_processing_order(gates_x, reverse: tuple[bool, ...]) -> tuple:
    """[time, directions, batch, gates] -> one [time, batch, gates] per direction, in the order it runs."""
    return tuple(gates_x[::-1, d] if r else gates_x[:, d] for d, r in enumerate(reverse))


def _recurrence(cell, steps: tuple, state: tuple, sequence_lens, reverse: tuple[bool, ...]):
    """Scan `cell(x_t, state) -> state` over time, every direction at once.

    `steps` holds one [time, batch, gates] per direction in the order it runs (a backward direction's reversed in
    time); cell sees them stacked, [directions, batch, gates], and each state entry is [directions, batch, hidden]
    with the hidden state first. Past a sequence's length the state is held and the output is zero, so a backward
    direction starts at each sequence's last valid step. Returns Y [time, directions, batch, hidden] in time order
    and the final state.
    """
    time, batch = steps[0].shape[:2]
    valid = None
    if sequence_lens is not None:
        valid = jnp.arange(time)[:, None] < jnp.asarray(sequence_lens)[None, :]
        valid = _flip_time(jnp.broadcast_to(valid[:, None, :, None], (time, len(steps), batch, 1)), reverse)

    def step(state, inputs):
        xs, ok = inputs
        new = cell(jnp.stack(xs), state)
        if ok is None:
            return new, new[0]
        return tuple(jnp.where(ok, n, s) for n, s in zip(new, state)), jnp.where(ok, new[0], 0)

    final, ys = lax.scan(step, state, (steps, valid))
    if sequence_lens is not None:  # an empty sequence has no last step: its final state is zero, as in onnxruntime
        final = tuple(jnp.where(jnp.asarray(sequence_lens)[:, None] > 0, s, 0) for s in final)
    return _flip_time(ys, reverse), final


def _run(cell, X, W, R, bias, sequence_lens, initial: tuple, layout: int, reverse: tuple[bool, ...]):
    """What RNN, GRU and LSTM share: layouts, default states, the input projection of all steps, the scan.

    Returns (Y, *final states) in the op's layout.
    """
    if layout:
        X = jnp.swapaxes(X, 0, 1)
        initial = tuple(None if s is None else jnp.swapaxes(s, 0, 1) for s in initial)
    zeros = jnp.zeros((len(reverse), X.shape[1], R.shape[-1]), X.dtype)
    state = tuple(zeros if s is None else jnp.asarray(s) for s in initial)
    # one product per direction, written in the order that direction runs: no copies of every step's gates into a
    # [time, directions] array and reversed (bidi-lstm-bytes 11.7 -> 6.6 ms at batch 8, 3.0 -> 2.1-2.4 at batch 1)
    W = jnp.asarray(W)
    steps = tuple(jnp.einsum("tbi,gi->tbg", X[::-1] if r else X, W[d]) + bias[d] for d, r in enumerate(reverse))
    Y, final = _recurrence(cell, steps, state, sequence_lens, reverse)
    if layout:
        return (jnp.transpose(Y, (2, 0, 1, 3)), *(jnp.swapaxes(s, 0, 1) for s in final))
    return (Y, *final)


def _biases(B, R):
    """(Wb, Rb), each [directions, gates * hidden]."""
    if B is None:
        zeros = jnp.zeros(R.shape[:2], R.dtype)
        return zeros, zeros
    return tuple(jnp.split(jnp.asarray(B), 2, axis=-1))


def _projection(R, X, layout: int):
    """h -> h @ R^T for every direction: [directions, batch, hidden] -> [directions, batch, gates].

    Over more than one step R is transposed once, outside the scan, so that every step's product reads its
    weight in a matmul's own layout (the shared models' bidirectional LSTM 2.2x faster); a single step reads R
    as it is (transposing the whole weight for one product cost lstm-classifier 2x).
    """
    if X.shape[1 if layout else 0] > 1:
        RT = jnp.swapaxes(jnp.asarray(R), 1, 2)
        return lambda h: jnp.einsum("dbh,dhg->dbg", h, RT)
    return lambda h: jnp.einsum("dbh,dgh->dbg", h, R)


def _clip(x, clip):
    return x if clip is None else jnp.clip(x, -clip, clip)


def _peephole(gate, p, c):
    return gate if p is None else gate + p * c


@op("RNN", 14)
def RNN(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
        activations=("Tanh", "Tanh"), clip=None, direction="forward", hidden_size=None, layout=0):
    """H = f(X W^T + H R^T + Wb + Rb); returns (Y, Y_h)."""
    reverse = _directions(direction)
    (f,) = _activations(activations, activation_alpha, activation_beta, 1, len(reverse))
    wb, rb = _biases(B, R)
    recur = _projection(R, X, layout)

    def cell(x, state):
        return (f(_clip(x + recur(state[0]), clip)),)

    return _run(cell, X, W, R, wb + rb, sequence_lens, (initial_h,), layout, reverse)


@op("GRU", 14)
def GRU(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    """Update gate z, reset gate r, candidate h~; H = (1 - z) h~ + z H. Returns (Y, Y_h)."""
    reverse = _directions(direction)
    f, g = _activations(activations or ("Sigmoid", "Tanh"), activation_alpha, activation_beta, 2, len(reverse))
    wb, rb = _biases(B, R)
    zr = 2 * R.shape[-1]  # the update and reset gates come first, then the hidden gate
    bias, rb_h = (wb + rb.at[:, zr:].set(0), rb[:, None, zr:]) if linear_before_reset else (wb + rb, None)
    recur, recur_zr, recur_h = (_projection(r, X, layout) for r in (R, R[:, :zr], R[:, zr:]))

    def cell(x, state):
        h = state[0]
        if linear_before_reset:
            hr = recur(h)
            z, r = jnp.split(f(_clip(x[..., :zr] + hr[..., :zr], clip)), 2, axis=-1)
            candidate = g(_clip(x[..., zr:] + r * (hr[..., zr:] + rb_h), clip))
        else:
            z, r = jnp.split(f(_clip(x[..., :zr] + recur_zr(h), clip)), 2, axis=-1)
            candidate = g(_clip(x[..., zr:] + recur_h(r * h), clip))
        return ((1 - z) * candidate + z * h,)

    return _run(cell, X, W, R, bias, sequence_lens, (initial_h,), layout, reverse)


def _lstm_cell(recur, P, f, g, h, clip, input_forget):
    """The LSTM step on input projections x ([directions, batch, 4 * hidden], bias included) and the state (H, C):
    gates i, o, f and cell c in that order, optional peepholes P (i, o, f); `recur(H)` projects the hidden state."""
    p_i, p_o, p_f = (None,) * 3 if P is None else jnp.split(jnp.asarray(P)[:, None, :], 3, axis=-1)

    def cell(x, state):
        h_prev, c_prev = state
        i, o, forget, c = jnp.split(x + recur(h_prev), 4, axis=-1)
        i = f(_clip(_peephole(i, p_i, c_prev), clip))
        forget = 1 - i if input_forget else f(_clip(_peephole(forget, p_f, c_prev), clip))
        c = forget * c_prev + i * g(_clip(c, clip))
        o = f(_clip(_peephole(o, p_o, c), clip))
        return o * h(c), c

    return cell


@op("LSTM", 14)
def LSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, activation_alpha=None,
         activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
         layout=0):
    """Gates i, o, f and cell c (in that order in W, R, B), optional peepholes P (i, o, f); returns (Y, Y_h, Y_c)."""
    reverse = _directions(direction)
    names = activations or ("Sigmoid", "Tanh", "Tanh")
    f, g, h = _activations(names, activation_alpha, activation_beta, 3, len(reverse))
    wb, rb = _biases(B, R)
    cell = _lstm_cell(_projection(R, X, layout), P, f, g, h, clip, input_forget)
    return _run(cell, X, W, R, wb + rb, sequence_lens, (initial_h, initial_c), layout, reverse)


def _older(fn, since: int, *, drop: tuple[str, ...] = (), **only_older):
    """Register `fn` for an older schema that lacks the attributes `drop` (fn's defaults apply) and has
    `only_older` (name=spec default): attributes with no effect on the result, or a default that differs."""
    signature = inspect.signature(fn)
    kept = [p for p in signature.parameters.values() if p.name not in drop and p.name not in only_older]
    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in only_older.items()]

    def older(*inputs, **attrs):
        return fn(*inputs, **{k: v for k, v in attrs.items() if k in signature.parameters})

    older.__signature__ = signature.replace(parameters=kept + added)
    older.__name__ = older.__qualname__ = f"{fn.__name__}_{since}"
    older.__doc__ = f"{fn.__name__} as opset {since} defines it."
    op(fn.__name__, since)(older)


# output_sequence (opset 1) only said whether Y may be left out, which the node's outputs already say.
_older(RNN, 1, drop=("layout",), output_sequence=0)
_older(RNN, 7, drop=("layout",))
_older(GRU, 1, drop=("layout", "linear_before_reset"), output_sequence=0, direction="foward")
_older(GRU, 3, drop=("layout",), output_sequence=0)
_older(GRU, 7, drop=("layout",))
_older(LSTM, 1, drop=("layout",), output_sequence=0)
_older(LSTM, 7, drop=("layout",))

"""Differential fuzzing: random valid ONNX graphs, onnx_jax against onnx.reference.

A `GraphBuilder` draws a graph of 2-8 steps (a chain, or a DAG that may read any earlier value) from
elementwise, shape, reduction and indexing ops. It tracks every value's shape while building, so
each graph is valid by construction (the ONNX checker with full shape inference confirms it), and
an error estimate per value, so the tolerance follows the arithmetic rather than one global guess:
ops that are exact in both implementations (Relu, Neg, Max, Gather, Reshape, ...) keep it at zero,
and a `Where` condition only ever compares exact values, so a rounding difference cannot flip it.

CI runs the bounded, derandomized "ci" profile (tests/conftest.py). For a longer search:

    HYPOTHESIS_PROFILE=dev .venv/bin/python -m pytest tests/test_fuzz.py
    FUZZ_EXAMPLES=5000 HYPOTHESIS_PROFILE=dev .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import onnx_jax

EPS = 1e-6  # per-op rounding slack relative to a value's magnitude: float32 ulps, with room for transcendentals
RTOL = 1e-5
INPUT_BOUND = 3.0  # graph inputs and float weights are drawn from [-INPUT_BOUND, INPUT_BOUND]
MAX_BOUND = 1e4  # ops that would push a value's magnitude past this are not drawn
MAX_SIDE = 4
MAX_RANK = 4
EXAMPLE_TIME_LIMIT_S = 120  # one graph: build, compile, run twice; far more than any takes


@contextlib.contextmanager
def example_time_limit():
    """A graph that makes onnx_jax (or the reference) hang fails its example instead of hanging the run."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"one example ran past {EXAMPLE_TIME_LIMIT_S}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(EXAMPLE_TIME_LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fuzz_settings(ci_examples: int):
    """`ci_examples` under the ci profile; the dev profile's count (or FUZZ_EXAMPLES) otherwise."""
    examples = int(os.environ.get("FUZZ_EXAMPLES", 0)) or (
        ci_examples if settings.default.derandomize else settings.default.max_examples
    )
    ci = settings.default.derandomize and not os.environ.get("FUZZ_EXAMPLES")
    return settings(
        max_examples=examples,
        deadline=None,
        # every example compiles, so shrinking can take minutes: CI reports the first failing graph as drawn
        # (with its reproduce_failure blob); the dev profile shrinks it
        phases=[Phase.explicit, Phase.reuse, Phase.generate] if ci else settings.default.phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@dataclass(frozen=True)
class Val:
    """A value while the graph is built: its shape, a bound on |value|, and a bound on the difference between
    two correct float32 implementations (zero for values only exact ops produced)."""

    name: str
    shape: tuple[int, ...]
    bound: float
    err: float = 0.0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def exact(self) -> bool:
        return self.err == 0.0


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """numpy's broadcast of the shapes, or None when they do not broadcast."""
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def slice_length(dim: int, start: int, end: int, step: int) -> int:
    """The length ONNX Slice gives one axis (starts/ends clamped as the spec says)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return len(range(start, end, step))


class GraphBuilder:
    """Draws a valid graph step by step; `values` holds what later steps may read."""

    def __init__(self, draw, dag: bool):
        self.draw, self.dag = draw, dag
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[tuple[Val, np.dtype]] = []  # (value, dtype) of each graph input
        self.initializers: list[onnx.TensorProto] = []
        self.values: list[Val] = []
        self.feeds: dict[str, np.ndarray] = {}  # run-time data drawn for each graph input
        self.counter = 0

    # names and values
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, array: np.ndarray, prefix: str = "c") -> str:
        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, prefix: str = "k") -> str:
        return self.constant(np.array(values, np.int64), prefix)

    def new_float(self, shape: tuple[int, ...]) -> Val:
        """A fresh float operand of `shape`: a graph input, or a float weight (a param in onnx_jax)."""
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        data = rng.uniform(-INPUT_BOUND, INPUT_BOUND, size=shape).astype(np.float32)
        if self.draw(st.integers(0, 3)) == 0:
            value = Val(self.constant(data, "w"), shape, INPUT_BOUND)
        else:
            value = Val(self.fresh("x"), shape, INPUT_BOUND)
            self.inputs.append((value, np.dtype(np.float32)))
            self.feeds[value.name] = data
        self.values.append(value)
        return value

    def new_indices(self, shape: tuple[int, ...], low: int, high: int) -> str:
        """int64 indices in [low, high]: a constant, or a run-time graph input."""
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        data = rng.integers(low, high + 1, size=shape).astype(np.int64)
        if self.draw(st.booleans()):
            return self.constant(data, "i")
        value = Val(self.fresh("ix"), shape, float(max(abs(low), abs(high))))
        self.inputs.append((value, np.dtype(np.int64)))
        self.feeds[value.name] = data
        return value.name

    def node(self, op_type: str, inputs: list[str], shape: tuple[int, ...], bound: float, err: float,
             **attrs) -> Val:
        out = Val(self.fresh("v"), tuple(shape), bound, err)
        self.nodes.append(helper.make_node(op_type, inputs, [out.name], name=f"n{len(self.nodes)}_{op_type}", **attrs))
        self.values.append(out)
        return out

    def draw_shape(self, min_rank: int = 1) -> tuple[int, ...]:
        rank = self.draw(st.integers(min_rank, MAX_RANK))
        return tuple(self.draw(st.lists(st.integers(1, MAX_SIDE), min_size=rank, max_size=rank)))

    def pick(self, ok=lambda v: True) -> Val | None:
        """The operand of the next step: the newest value in a chain, any suitable earlier one in a DAG."""
        if not self.dag:
            newest = self.values[-1]
            return newest if ok(newest) else None
        candidates = [v for v in self.values if ok(v)]
        return self.draw(st.sampled_from(candidates)) if candidates else None

    def partner(self, shape: tuple[int, ...], ok=lambda v: True) -> Val:
        """A second operand that broadcasts with `shape`: an earlier value, or a fresh one of a drawn shape."""
        existing = [v for v in self.values if broadcast(v.shape, shape) is not None and ok(v)]
        if existing and self.draw(st.booleans()):
            return self.draw(st.sampled_from(existing))
        rank = self.draw(st.integers(0, len(shape)))
        tail = shape[len(shape) - rank:]
        shrunk = tuple(1 if self.draw(st.integers(0, 3)) == 0 else d for d in tail)
        extra = tuple(self.draw(st.lists(st.sampled_from([1, 2]), max_size=1))) if rank == len(shape) else ()
        return self.new_float(extra + shrunk)

    # elementwise
    def unary(self, op_type: str) -> Val | None:
        a = self.pick(lambda v: op_type != "Exp" or v.bound <= 10)
        if a is None:
            return None
        if op_type in ("Relu", "Abs", "Neg"):
            return self.node(op_type, [a.name], a.shape, a.bound, a.err)
        if op_type == "Exp":
            out = math.exp(a.bound)
            return self.node(op_type, [a.name], a.shape, out, out * (a.err + EPS))
        if op_type == "Tanh":
            return self.node(op_type, [a.name], a.shape, 1.0, a.err + EPS)
        return self.node(op_type, [a.name], a.shape, 1.0, a.err / 4 + EPS)  # Sigmoid

    def binary(self, op_type: str) -> Val | None:
        a = self.pick()
        if a is None:
            return None
        b = self.partner(a.shape)
        shape = broadcast(a.shape, b.shape)
        if op_type in ("Add", "Sub"):
            bound, err = a.bound + b.bound, a.err + b.err
        elif op_type == "Mul":
            bound, err = a.bound * b.bound, a.err * b.bound + b.err * a.bound + a.err * b.err
        else:  # Div by |b| + 1: never by zero, and |a / (|b| + 1)| <= |a|
            absolute = self.node("Abs", [b.name], b.shape, b.bound, b.err)
            b = self.node("Add", [absolute.name, self.constant(np.float32(1.0), "one")], b.shape, b.bound + 1, b.err)
            bound, err = a.bound, a.err + a.bound * b.err
        if bound > MAX_BOUND:
            return None
        return self.node(op_type, [a.name, b.name], shape, bound, err + EPS * bound)

    def variadic(self, op_type: str) -> Val | None:
        a = self.pick()
        if a is None:
            return None
        operands = [a] + [self.partner(a.shape) for _ in range(self.draw(st.integers(0, 2)))]
        shape = broadcast(*(v.shape for v in operands))
        if shape is None:  # two partners that each broadcast with `a` but not with each other
            operands = operands[:2]
            shape = broadcast(*(v.shape for v in operands))
        return self.node(op_type, [v.name for v in operands], shape, max(v.bound for v in operands),
                         max(v.err for v in operands))

    def where(self) -> Val | None:
        c = self.pick()
        if c is None:
            return None
        exact = [v for v in self.values if v.exact and broadcast(v.shape, c.shape) is not None]
        x = self.draw(st.sampled_from(exact or [None]))
        if x is None:
            x = self.new_float(c.shape)
        if self.draw(st.booleans()):
            y = self.constant(np.float32(self.draw(st.sampled_from([-1.0, 0.0, 0.5]))), "t")
        else:
            y = self.partner(x.shape, lambda v: v.exact and broadcast(v.shape, c.shape) is not None)
            y = y.name if broadcast(x.shape, y.shape, c.shape) is not None else x.name
        compare = self.draw(st.sampled_from(["Greater", "Less", "GreaterOrEqual", "LessOrEqual"]))
        cond = self.fresh("b")
        self.nodes.append(helper.make_node(compare, [x.name, y], [cond], name=f"n{len(self.nodes)}_{compare}"))
        cond_shape = broadcast(x.shape, next((v.shape for v in self.values if v.name == y), ()))
        d = self.partner(c.shape)
        shape = broadcast(cond_shape, c.shape, d.shape)
        if shape is None:
            d = c
            shape = broadcast(cond_shape, c.shape)
        return self.node("Where", [cond, c.name, d.name], shape, max(c.bound, d.bound), max(c.err, d.err))

    # shape ops
    def reshape(self) -> Val | None:
        a = self.pick()
        if a is None:
            return None
        remaining, target = a.size, []
        for _ in range(self.draw(st.integers(1, MAX_RANK)) - 1):
            dim = self.draw(st.sampled_from([d for d in range(1, remaining + 1) if remaining % d == 0]))
            target.append(dim)
            remaining //= dim
        target.append(remaining)
        target = self.draw(st.permutations(target))
        spec = list(target)
        if self.draw(st.booleans()):
            spec[self.draw(st.integers(0, len(spec) - 1))] = -1
        for i in range(min(len(spec), len(a.shape))):
            if spec[i] == a.shape[i] and self.draw(st.integers(0, 3)) == 0:
                spec[i] = 0  # allowzero=0: copy the input's dimension
        return self.node("Reshape", [a.name, self.ints(spec, "shape")], tuple(target), a.bound, a.err)

    def transpose(self) -> Val | None:
        a = self.pick()
        if a is None:
            return None
        if not a.shape or self.draw(st.booleans()):
            return self.node("Transpose", [a.name], a.shape[::-1], a.bound, a.err)
        perm = self.draw(st.permutations(range(len(a.shape))))
        return self.node("Transpose", [a.name], tuple(a.shape[p] for p in perm), a.bound, a.err, perm=perm)

    def unsqueeze(self) -> Val | None:
        a = self.pick(lambda v: len(v.shape) < MAX_RANK + 1)
        if a is None:
            return None
        rank = len(a.shape) + self.draw(st.integers(1, 2))
        positions = self.draw(st.permutations(range(rank)))[: rank - len(a.shape)]
        dims = iter(a.shape)
        shape = tuple(1 if axis in positions else next(dims) for axis in range(rank))
        axes = [p - rank if self.draw(st.booleans()) else p for p in positions]
        return self.node("Unsqueeze", [a.name, self.ints(axes, "axes")], shape, a.bound, a.err)

    def squeeze(self) -> Val | None:
        a = self.pick(lambda v: 1 in v.shape)
        if a is None:
            return None
        ones = [i for i, d in enumerate(a.shape) if d == 1]
        if self.draw(st.booleans()):
            return self.node("Squeeze", [a.name], tuple(d for d in a.shape if d != 1), a.bound, a.err)
        chosen = self.draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        axes = [i - len(a.shape) if self.draw(st.booleans()) else i for i in chosen]
        shape = tuple(d for i, d in enumerate(a.shape) if i not in chosen)
        return self.node("Squeeze", [a.name, self.ints(axes, "axes")], shape, a.bound, a.err)

    def concat(self) -> Val | None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return None
        axis = self.draw(st.integers(-len(a.shape), len(a.shape) - 1))
        k = axis % len(a.shape)
        fits = [v for v in self.values if len(v.shape) == len(a.shape)
                and all(x == y for i, (x, y) in enumerate(zip(v.shape, a.shape)) if i != k)]
        operands = [a]
        for _ in range(self.draw(st.integers(1, 2))):
            choice = self.draw(st.integers(0, 2))
            if choice == 0:
                operands.append(self.draw(st.sampled_from(fits)))
            else:
                shape = a.shape[:k] + (self.draw(st.integers(1, MAX_SIDE)),) + a.shape[k + 1:]
                operands.append(self.new_float(shape) if choice == 1 else a)
        shape = a.shape[:k] + (sum(v.shape[k] for v in operands),) + a.shape[k + 1:]
        return self.node("Concat", [v.name for v in operands], shape, max(v.bound for v in operands),
                         max(v.err for v in operands), axis=axis)

    def slice(self) -> Val | None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return None
        rank = len(a.shape)
        axes = self.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
        starts, ends, steps, shape = [], [], [], list(a.shape)
        big = 2**63 - 1
        for axis in axes:
            dim = a.shape[axis]
            step = self.draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
            start = self.draw(st.integers(-dim - 2, dim + 1))
            if step < 0:  # the spec clamps a start before the axis to 0; onnx.reference (and onnx_jax) do not
                start = max(start, -dim)  # see test_slice_negative_step_clamps_a_start_before_the_axis
            end = self.draw(st.sampled_from([big, -big - 1]) | st.integers(-dim - 2, dim + 1))
            if slice_length(dim, start, end, step) == 0:
                start, end = (0, big) if step > 0 else (-1, -big - 1)
            starts.append(start)
            ends.append(end)
            steps.append(step)
            shape[axis] = slice_length(dim, start, end, step)
        inputs = [a.name, self.ints(starts, "starts"), self.ints(ends, "ends")]
        if axes != list(range(len(axes))) or self.draw(st.booleans()):
            inputs.append(self.ints([x - rank if self.draw(st.booleans()) else x for x in axes], "axes"))
        if any(s != 1 for s in steps) or self.draw(st.booleans()):
            inputs += [""] * (4 - len(inputs)) + [self.ints(steps, "steps")]  # "": axes omitted, the default
        return self.node("Slice", inputs, tuple(shape), a.bound, a.err)

    def expand(self) -> Val | None:
        a = self.pick(lambda v: v.size <= 64)
        if a is None:
            return None
        target = [self.draw(st.sampled_from([1, 2, 3])) if d == 1 else self.draw(st.sampled_from([d, 1]))
                  for d in a.shape]
        target = self.draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2)) + target
        return self.node("Expand", [a.name, self.ints(target, "shape")], broadcast(a.shape, tuple(target)),
                         a.bound, a.err)

    def flatten(self) -> Val | None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return None
        axis = self.draw(st.integers(-len(a.shape), len(a.shape)))
        k = axis + len(a.shape) if axis < 0 else axis
        shape = (math.prod(a.shape[:k]), math.prod(a.shape[k:]))
        return self.node("Flatten", [a.name], shape, a.bound, a.err, axis=axis)

    # reductions
    def reduce(self, op_type: str) -> Val | None:
        a = self.pick()
        if a is None:
            return None
        rank = len(a.shape)
        axes = self.draw(st.lists(st.integers(0, rank - 1), max_size=rank, unique=True)) if rank else []
        keepdims = self.draw(st.integers(0, 1))
        attrs = {"keepdims": keepdims}
        inputs = [a.name]
        if axes:
            inputs.append(self.ints([x - rank if self.draw(st.booleans()) else x for x in axes], "axes"))
        elif self.draw(st.booleans()):  # an empty axes tensor: reduce all, or nothing when noop_with_empty_axes
            inputs.append(self.ints(np.zeros(0, np.int64), "axes"))
            if self.draw(st.booleans()):
                attrs["noop_with_empty_axes"] = 1
        reduced = set(axes or ([] if attrs.get("noop_with_empty_axes") else range(rank)))
        shape = tuple(1 if i in reduced else d for i, d in enumerate(a.shape) if keepdims or i not in reduced)
        count = math.prod(a.shape[i] for i in reduced)
        if op_type == "ReduceSum":
            bound, err = a.bound * count, count * (a.err + EPS * a.bound)
            if bound > MAX_BOUND:
                return None
        elif op_type == "ReduceMean":
            bound, err = a.bound, a.err + count * EPS * a.bound
        else:
            bound, err = a.bound, a.err
        return self.node(op_type, inputs, shape, bound, err, **attrs)

    # indexing
    def gather(self) -> Val | None:
        a = self.pick(lambda v: len(v.shape) >= 1)
        if a is None:
            return None
        axis = self.draw(st.integers(-len(a.shape), len(a.shape) - 1))
        k = axis % len(a.shape)
        ishape = tuple(self.draw(st.lists(st.integers(1, 3), max_size=2)))
        indices = self.new_indices(ishape, -a.shape[k], a.shape[k] - 1)
        shape = a.shape[:k] + ishape + a.shape[k + 1:]
        return self.node("Gather", [a.name, indices], shape, a.bound, a.err, axis=axis)

    def gather_elements(self) -> Val | None:
        # onnx.reference's GatherElements slices `index.shape[axis + 1:]` (wrong for axis=-1) and uses np.choose
        # (at most 64 choices): draw a non-negative axis whose dimension is at most 32
        a = self.pick(lambda v: any(d <= 32 for d in v.shape))
        if a is None:
            return None
        axis = k = self.draw(st.sampled_from([i for i, d in enumerate(a.shape) if d <= 32]))
        shape = tuple(self.draw(st.integers(1, 3)) if i == k else d for i, d in enumerate(a.shape))
        indices = self.new_indices(shape, -a.shape[k], a.shape[k] - 1)
        return self.node("GatherElements", [a.name, indices], shape, a.bound, a.err, axis=axis)

    STEPS = {
        **{op: (lambda self, op=op: self.unary(op)) for op in ("Relu", "Abs", "Neg", "Exp", "Tanh", "Sigmoid")},
        **{op: (lambda self, op=op: self.binary(op)) for op in ("Add", "Sub", "Mul", "Div")},
        **{op: (lambda self, op=op: self.variadic(op)) for op in ("Max", "Min")},
        "Where": where,
        "Reshape": reshape,
        "Transpose": transpose,
        "Unsqueeze": unsqueeze,
        "Squeeze": squeeze,
        "Concat": concat,
        "Slice": slice,
        "Expand": expand,
        "Flatten": flatten,
        **{op: (lambda self, op=op: self.reduce(op)) for op in ("ReduceSum", "ReduceMean", "ReduceMax")},
        "Gather": gather,
        "GatherElements": gather_elements,
    }

    def build(self, steps: int, opset: int) -> tuple[onnx.ModelProto, list[Val]]:
        self.new_float(self.draw_shape())
        made = 0
        for _ in range(steps * 4):  # an op with no suitable operand is skipped; a few tries per step
            if made == steps:
                break
            op_type = self.draw(st.sampled_from(sorted(self.STEPS)))
            if self.STEPS[op_type](self) is not None:
                made += 1
        produced = [v for v in self.values if v.name.startswith("v")]
        outputs = [produced[-1]]
        if self.dag and len(produced) > 1:
            outputs += self.draw(st.lists(st.sampled_from(produced[:-1]), max_size=2, unique_by=lambda v: v.name))
        symbolic = self.draw(st.booleans())
        graph = helper.make_graph(
            self.nodes,
            "fuzz",
            [
                helper.make_tensor_value_info(
                    v.name, helper.np_dtype_to_tensor_dtype(dtype),
                    [f"{v.name}_d{i}" if symbolic and i == 0 else d for i, d in enumerate(v.shape)],
                )
                for v, dtype in self.inputs
            ],
            [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, v.shape) for v in outputs],
            initializer=self.initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9), outputs


@st.composite
def random_graphs(draw):
    builder = GraphBuilder(draw, dag=draw(st.booleans()))
    model, outputs = builder.build(draw(st.integers(2, 8)), draw(st.sampled_from([18, 21])))
    return model, outputs, builder.feeds


def redraw_feeds(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """New data of the same shapes (indices stay, so they stay in range)."""
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-INPUT_BOUND, INPUT_BOUND, x.shape).astype(x.dtype) if x.dtype.kind == "f" else x
            for n, x in feeds.items()}


def compare(ours, ref, outputs: list[Val]) -> None:
    assert len(ours) == len(ref) == len(outputs)
    for got, want, value in zip(ours, ref, outputs):
        want = np.asarray(want)
        assert want.shape == value.shape, f"fuzzer bug: {value.name} tracked as {value.shape}, reference {want.shape}"
        assert got.dtype == want.dtype, f"{value.name}: dtype {got.dtype} != reference {want.dtype}"
        assert got.shape == want.shape, f"{value.name}: shape {got.shape} != reference {want.shape}"
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=4 * value.err + 1e-6, err_msg=value.name)


@fuzz_settings(ci_examples=40)
@given(random_graphs(), st.integers(0, 2**32 - 1))
def test_random_graphs_match_the_reference(case, seed):
    model, outputs, feeds = case
    note(onnx.printer.to_text(model))
    event(f"{len(model.graph.node) // 3 * 3}+ nodes")
    for op_type in {n.op_type for n in model.graph.node}:
        event(op_type)  # --hypothesis-show-statistics: how often each op was drawn
    onnx.checker.check_model(model, full_check=True)  # the builder's graphs are valid, shapes included
    with example_time_limit():
        rep = onnx_jax.prepare(model)
        reference = ReferenceEvaluator(model)
        for data in (feeds, redraw_feeds(feeds, seed)):  # the second run hits the compiled executable
            note(f"inputs: {data}")
            ours = rep.run(data)
            compare(ours, reference.run(None, data), outputs)
    assert rep.compiled_segments == 1


@fuzz_settings(ci_examples=10)
@given(random_graphs())
def test_random_graphs_eager_matches_jit(case):
    """to_jax's function run op by op (no jit) agrees with the compiled executable."""
    model, outputs, feeds = case
    note(onnx.printer.to_text(model))
    with example_time_limit():
        fn, params = onnx_jax.to_jax(model)
        eager = fn(params, *(feeds[i.name] for i in model.graph.input))
        compiled = onnx_jax.prepare(model).run(feeds)
    compare([np.asarray(e) for e in eager], compiled, outputs)


def test_the_builder_draws_every_op_it_lists():
    """Guard against a step that can never be drawn (no suitable operand, a bad precondition)."""
    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(random_graphs())
    def build(case):
        model, _, _ = case
        onnx.checker.check_model(model, full_check=True)
        seen.update(n.op_type for n in model.graph.node)

    with example_time_limit():
        build()
    assert set(GraphBuilder.STEPS) <= seen, sorted(set(GraphBuilder.STEPS) - seen)


@pytest.mark.parametrize("dim,start,end,step", [(5, 1, 4, 1), (5, -1, -6, -1), (5, 7, 0, -2), (5, 0, 2**63 - 1, 3),
                                                (5, -9, 9, 1), (5, 0, 0, 1), (5, 4, -2**63, -1)])
def test_slice_length_matches_the_reference(dim, start, end, step):
    x = np.arange(dim, dtype=np.float32)
    model = helper.make_model(
        helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array([v], np.int64), n)
                                       for n, v in (("s", start), ("e", end), ("a", 0), ("t", step))]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    (y,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert y.shape == (slice_length(dim, start, end, step),)


def test_slice_negative_step_clamps_a_start_before_the_axis():
    """Found by the fuzzer. The spec: a negative start gets dim added, then, for a negative step, is clamped into
    [0, dim - 1]; so x[-7::-1] of 5 elements is [x[0]] (onnxruntime agrees). onnx.reference uses Python slicing,
    where the start becomes "before the first element" and the result is empty, and onnx_jax does the same."""
    x = np.arange(5, dtype=np.float32)
    model = helper.make_model(
        helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="slice0")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array([v], np.int64), n)
                                       for n, v in (("s", -7), ("e", -2**63), ("a", 0), ("t", -1))]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    assert slice_length(5, -7, -2**63, -1) == 1
    (y,) = onnx_jax.prepare(model).run([x])
    np.testing.assert_array_equal(y, np.array([0.0], np.float32))

"""Graph -> one traceable JAX function.

Values flowing through the function are *static* (numpy arrays known while tracing) or *traced*
(jax arrays / tracers). A node whose inputs are all static is folded at trace time by the same op
code, so Shape -> Gather -> Concat -> Reshape chains disappear before XLA sees them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from . import host_numpy
from .dtypes import is_float, to_onnx_dtype
from .errors import (
    DataDependentShapeError,
    InvalidModelError,
    NodeExecutionError,
    OnnxJaxError,
    StaticValueRequiredError,
    UnsupportedOpError,
)
from .graph import Graph, Node, function_graph, get_schema
from .registry import REGISTRY, OpDef, Registry

Value = Any  # np.ndarray (static), jax.Array (traced), list (sequence) or None (empty optional)


@dataclass(frozen=True)
class HostValue:
    """Stands in, while tracing, for a run-time value that cannot enter XLA (strings): only host steps read it."""

    name: str


def is_static(value: Value) -> bool:
    """True when the value is known at trace time (numpy data, or a sequence of it)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return True
    if isinstance(value, list):
        return all(is_static(v) for v in value)
    return value is None


@dataclass(frozen=True)
class Context:
    """What an op registered with `context=True` gets: its node, and a way to run subgraphs."""

    node: Node
    env: Mapping[str, Value]
    program: Program

    @property
    def num_outputs(self) -> int:
        return len(self.node.outputs)

    def output_used(self, index: int) -> bool:
        return index < len(self.node.outputs) and bool(self.node.outputs[index])

    def run_subgraph(self, graph: Graph, *inputs: Value, wanted: Sequence[bool] | None = None) -> tuple[Value, ...]:
        """Evaluate a subgraph on positional inputs; it sees this node's scope by name. Outputs not `wanted`
        (a function body's outputs the calling node leaves unnamed, which the body may not even produce) are None."""
        if len(inputs) != len(graph.inputs):
            raise InvalidModelError(
                f"node {self.node.name!r}: subgraph {graph.name!r} takes {len(graph.inputs)} inputs, got {len(inputs)}"
            )
        scope = {**self.env, **graph.initializers}
        scope.update((info.name, v) for info, v in zip(graph.inputs, inputs))
        return self.program.evaluate(graph, scope, wanted)


def resolve_ops(graph: Graph, registry: Registry, functions: Mapping = {}) -> dict[Node, OpDef]:
    """The implementation of every node, subgraphs included; all unsupported ops reported at once."""
    plan, missing = {}, {}
    for node in graph.walk():
        opdef = resolve_node(node, registry, functions)
        if opdef is None:
            missing.setdefault((node.domain, node.op_type, node.opset), []).append(node.name)
        else:
            plan[node] = opdef
    if missing:
        raise UnsupportedOpError((d, t, v, tuple(names)) for (d, t, v), names in missing.items())
    return plan


def resolve_node(node: Node, registry: Registry, functions: Mapping) -> OpDef | None:
    """A node's implementation: registered, else a model-local function, else the schema's function body."""
    opdef = registry.resolve(node.domain, node.op_type, node.opset)
    if opdef is not None:
        return opdef
    local = functions.get((node.domain, node.op_type))
    schema = get_schema(node.op_type, node.domain, node.opset)
    if local is None and (schema is None or not (schema.has_function or schema.has_context_dependent_function)):
        return None

    def expand(*args: Value, ctx: Context, **attrs: Any) -> tuple[Value, ...]:
        body = local if local is not None else _schema_function(schema, node, args)
        graph = function_graph(body, node, ctx.program.graph.opsets)
        return ctx.run_subgraph(
            graph, *args, *[None] * (len(graph.inputs) - len(args)), wanted=[ctx.output_used(i) for i in range(
                len(graph.outputs))]
        )

    return OpDef(expand, node.domain, node.op_type, node.opset, (), frozenset(), False, False, True)


def _schema_function(schema: onnx.defs.OpSchema, node: Node, args: Sequence[Value]) -> onnx.FunctionProto:
    """The function body the ONNX schema defines for this node (context dependent ones see the input types)."""
    if schema.has_context_dependent_function:
        version = max(v for v in schema.context_dependent_function_opset_versions if v <= node.opset)
        types = [
            onnx.helper.make_tensor_type_proto(to_onnx_dtype(jnp.result_type(a)), jnp.shape(a)).SerializeToString()
            if a is not None else onnx.TypeProto().SerializeToString()
            for a in args
        ]
        raw = schema.get_context_dependent_function_with_opset_version(version, node.proto.SerializeToString(), types)
    else:
        version = max(v for v in schema.function_opset_versions if v <= node.opset)
        raw = schema.get_function_with_opset_version(version)
    return onnx.FunctionProto.FromString(raw)


def static_names(graph: Graph, plan: Mapping[Node, OpDef]) -> frozenset[str]:
    """Names whose values must be known at trace time: static op inputs and everything they are computed from."""
    producer = {out: node for node in graph.walk() for out in node.outputs if out}
    pending = [
        node.inputs[i]
        for node in graph.walk()
        for i in plan[node].static_positions(node)
        if i < len(node.inputs) and node.inputs[i]
    ]
    needed: set[str] = set()
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and not plan[node].shape_only:
            pending.extend(n for n in node.inputs if n)
            pending.extend(out.name for sub in subgraphs(node) for out in sub.outputs)  # If branches, loop bodies
    return frozenset(needed)


def subgraphs(node: Node) -> list[Graph]:
    """The graphs in a node's attributes (If branches, Loop and Scan bodies)."""
    return [g for v in node.attrs.values() for g in (v if isinstance(v, tuple) else (v,)) if isinstance(g, Graph)]


# ops whose weight stays an argument however small the model: XLA compiles a convolution written as multiply-adds
# (few channel-taps, depthwise) 1.5-5x slower with its filter compiled in (mnist-8's first layer 6 -> 29 us)
_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose", "ConcatConv", "DeformConv"})


def _filters(graph: Graph) -> set[str]:
    """The names convolutions read as their filter."""
    return {node.inputs[0 if node.op_type == "ConcatConv" else 1] for node in graph.nodes
            if node.op_type in _CONVOLUTIONS and len(node.inputs) > 1}


def _foldable_weights(graph: Graph, params: Mapping[str, np.ndarray]) -> set[str]:
    """The weights that may be compiled in as constants: those no convolution reads (filters and biases)."""
    read = {name for node in graph.nodes if node.op_type in _CONVOLUTIONS for name in node.inputs}
    return {n for n in params if n not in read}


class Program:
    """A graph ready to trace: ops resolved, initializers split into trainable params and constants."""

    def __init__(
        self,
        graph: Graph,
        registry: Registry = REGISTRY,
        *,
        fold_weights: bool = False,
        checks: bool = False,
        constant_size: int = 0,
        constant_bytes: int = 0,
    ):
        """`fold_weights`: every float initializer is a constant; `constant_size`: those of at most that many
        elements are, but convolution filters (prepare: a Pow's exponent, a rotary embedding's frequencies, which
        the lowerings and XLA then fold);
        `constant_bytes`: all but the filters of convolutions are, where together they take at most that many."""
        self.graph = graph
        self.checks = checks
        self.registry = registry
        self.plan = resolve_ops(graph, registry, graph.functions)
        self.static_names = static_names(graph, self.plan)
        inits, filters = graph.initializers, _filters(graph)
        self.params = {
            n: a for n, a in inits.items()
            if is_float(a.dtype) and n not in self.static_names and not fold_weights
            and (a.size > constant_size or n in filters)
        }
        folded = _foldable_weights(graph, self.params)
        if sum(self.params[n].nbytes for n in folded) <= constant_bytes:
            self.params = {n: a for n, a in self.params.items() if n not in folded}
        self.constants = {n: a for n, a in inits.items() if n not in self.params}
        self.input_names = tuple(i.name for i in graph.inputs)
        self.output_names = tuple(o.name for o in graph.outputs)

    def __call__(self, params: Mapping[str, Value], inputs: Mapping[str, Value]) -> tuple[Value, ...]:
        """The whole graph as a function of (params, inputs by name); pure and traceable."""
        return self.evaluate(self.graph, {**self.constants, **params, **inputs})

    def evaluate(
        self, graph: Graph, env: dict[str, Value], wanted: Sequence[bool] | None = None
    ) -> tuple[Value, ...]:
        """Run every node of `graph` on `env` (updated in place); the graph's outputs (None where not `wanted`)."""
        self.evaluate_from(graph, env, 0, breakable=False)
        return tuple(
            self._lookup(env, o.name, None) if wanted is None or wanted[i] else None
            for i, o in enumerate(graph.outputs)
        )

    def evaluate_from(self, graph: Graph, env: dict[str, Value], start: int, *, breakable: bool = True) -> int | None:
        """Run nodes from `start` on; stop before a node that must run on the host and return its index.

        A node runs on the host when it is a host op (or makes strings) and some input is traced, when it reads a
        string value (a run-time one, or a constant one beside a traced input), and when it finds while tracing
        that its outputs' shapes or structure depend on run-time data (an If whose branches give different
        structures). A host op with a `host_tail` (a classifier with string labels) runs its numeric part here,
        compiled, and only the tail on the host."""
        for index in range(start, len(graph.nodes)):
            node = graph.nodes[index]
            args = [self._lookup(env, name, node) for name in node.inputs]
            opdef = self._opdef(node)
            tail = opdef.host_tail(node) if opdef.host_tail is not None else None
            traced = not all(is_static(a) for a in args)
            if (traced and (self._runs_on_host(node, opdef) or any(host_numpy.holds_strings(a) for a in args))) or any(
                isinstance(a, HostValue) for a in args
            ):
                if breakable:
                    return index
                raise self._no_host(node)
            try:
                results = self._call(node, args, env)
            except DataDependentShapeError as e:
                if breakable and e.node == node.name:
                    return index  # with concrete inputs on the host, the data decides
                raise
            if tail is not None:
                if not all(is_static(r) for r in results):
                    if not breakable:
                        raise self._no_host(node)
                    env.update(zip(_device_names(node), results + (None,) * (len(node.outputs) - len(results))))
                    return index
                results = self._run_tail(node, tail, results)
            self._store(env, node, results)
        return None

    @staticmethod
    def _no_host(node: Node) -> DataDependentShapeError:
        return DataDependentShapeError(
            node.name, node.op_type,
            "its output shape depends on run-time data or it makes strings; that works at the top level of a graph "
            "run with onnx_jax.prepare (a graph break), not inside a subgraph or a jax transformation",
        )

    def run_host(self, node: Node, env: dict[str, Value]) -> None:
        """Run a node on concrete data (between two compiled segments), storing its outputs in `env`. A node
        with a host tail takes the numeric results its segment computed, when there are any."""
        opdef = self._opdef(node)
        tail = opdef.host_tail(node) if opdef.host_tail is not None else None
        computed = _device_names(node)
        if tail is not None and computed and all(n in env for n in computed):
            self._store(env, node, self._run_tail(node, tail, tuple(_to_static(env[n]) for n in computed)))
            return
        args = [_to_static(self._lookup(env, name, node)) for name in node.inputs]
        results = self._call(node, args, env)
        self._store(env, node, results if tail is None else self._run_tail(node, tail, _to_static(results)))

    @staticmethod
    def _run_tail(node: Node, tail: Callable, results: tuple[Value, ...]) -> tuple[Value, ...]:
        try:
            out = tail(results)
        except OnnxJaxError:
            raise
        except Exception as e:
            raise NodeExecutionError(node.name, node.op_type, e) from e
        return out if isinstance(out, tuple) else (out,)

    @staticmethod
    def _runs_on_host(node: Node, opdef: OpDef) -> bool:
        return opdef.runs_on_host(node) or host_numpy.makes_strings(node)

    def live_names(self, start: int) -> list[str]:
        """Names that nodes from `start` on (their subgraphs included) or the graph outputs read; and the numeric
        results of node `start` when it is a host tail's."""
        names = dict.fromkeys(o.name for o in self.graph.outputs)
        if start < len(self.graph.nodes):
            names.update(dict.fromkeys(_device_names(self.graph.nodes[start])))
        for node in self.graph.nodes[start:]:
            names.update(dict.fromkeys(n for n in node.inputs if n))
            for sub in subgraphs(node):
                names.update(dict.fromkeys(n for inner in sub.walk() for n in inner.inputs if n))
        return list(names)

    @staticmethod
    def _store(env: dict[str, Value], node: Node, results: tuple[Value, ...]) -> None:
        for name, value in zip(node.outputs, results):
            if name:
                env[name] = value

    @staticmethod
    def _lookup(env: Mapping[str, Value], name: str, node: Node | None) -> Value:
        if not name:
            return None
        try:
            return env[name]
        except KeyError:
            where = f"node {node.name!r} ({node.op_type}) input" if node else "graph output"
            raise InvalidModelError(f"{where} {name!r} is not produced by any node, input or initializer") from None

    def _opdef(self, node: Node) -> OpDef:
        opdef = self.plan.get(node)
        if opdef is None:  # a node of a function body, expanded while tracing
            opdef = resolve_node(node, self.registry, self.graph.functions)
            if opdef is None:
                raise UnsupportedOpError([(node.domain, node.op_type, node.opset, (node.name,))])
            self.plan[node] = opdef
        return opdef

    @staticmethod
    def _fold_objects(node: Node, opdef: OpDef, args: list[Value], attrs: dict) -> Value:
        """Strings and symbolic shapes: host ops take them as they are, other ops go through host_numpy."""
        if opdef.runs_on_host(node) and not host_numpy.makes_strings(node):
            return opdef.fn(*args, **attrs)
        try:
            return host_numpy.fold(node.op_type, args, attrs)
        except KeyError:
            raise NodeExecutionError(
                node.name, node.op_type,
                NotImplementedError("cannot compute on strings or on shapes with symbolic dimensions (jax.export)"),
            ) from None

    def fold_node(self, node: Node, env: Mapping[str, Value]) -> tuple[Value, ...] | None:
        """The node's outputs as numpy data when it folds: every input known in `env` as numpy data, an op
        that folds (not random, not a host op) and no subgraph; None otherwise."""
        opdef = self._opdef(node)
        args = [env.get(name) if name else None for name in node.inputs]
        if not opdef.fold or opdef.runs_on_host(node) or subgraphs(node) or not all(is_static(a) for a in args):
            return None
        results = self._call(node, args, env)
        if opdef.host_tail is not None and (tail := opdef.host_tail(node)) is not None:
            results = self._run_tail(node, tail, results)  # label indices to string labels, as evaluation does
        return results if all(isinstance(r, np.ndarray) for r in results) else None

    def _call(self, node: Node, args: list[Value], env: Mapping[str, Value]) -> tuple[Value, ...]:
        opdef = self._opdef(node)
        for i in opdef.static_positions(node):
            if i < len(args) and not is_static(args[i]):
                raise StaticValueRequiredError(node.name, node.op_type, node.inputs[i], i)
        kwargs = dict(node.attrs)
        if self.checks:
            from .checks import check_indices

            check_indices(node, args, kwargs)
        if opdef.context:
            kwargs["ctx"] = Context(node, env, self)
        try:
            if opdef.fold and all(is_static(a) for a in args) and (
                any(host_numpy.is_object(a) for a in args) or host_numpy.makes_strings(node)
            ):
                result = self._fold_objects(node, opdef, args, kwargs)
            elif opdef.fold and all(is_static(a) for a in args):
                with jax.ensure_compile_time_eval():
                    result = _to_static(opdef.fn(*args, **kwargs))
            else:
                result = opdef.fn(*args, **kwargs)
        except OnnxJaxError:
            raise
        except Exception as e:
            raise NodeExecutionError(node.name, node.op_type, e) from e
        results = result if isinstance(result, tuple) else (result,)
        for value in results:
            if _too_large(value):
                raise NodeExecutionError(
                    node.name, node.op_type, ValueError(f"output shape {tuple(value.shape)} has 2**62 or more elements")
                )
        wanted = len(node.outputs)
        if len(results) < wanted and any(node.outputs[len(results):]):
            raise NodeExecutionError(
                node.name, node.op_type, ValueError(f"produced {len(results)} outputs, the node names {wanted}")
            )
        return results[:wanted]


def _device_names(node: Node) -> list[str]:
    """Where a host-tail node's numeric results wait, between its compiled segment and its host step."""
    base = next((name for name in node.outputs if name), None)
    return [] if base is None else [f"{base}\x00numeric{i}" for i in range(len(node.outputs))]


def _too_large(value: Value) -> bool:
    """An output no device could hold; XLA would abort the process compiling it."""
    shape = getattr(value, "shape", None)
    if shape is None or not all(isinstance(d, (int, np.integer)) for d in shape):
        return False
    return math.prod(int(d) for d in shape) >= host_numpy.MAX_ELEMENTS


def _to_static(result: Value) -> Value:
    if isinstance(result, tuple):
        return tuple(_to_static(r) for r in result)
    if isinstance(result, list):
        return [_to_static(r) for r in result]
    if result is None or isinstance(result, (np.ndarray, dict)):  # a dict: a map (ZipMap's), on the host
        return result
    return np.asarray(result)


def make_function(program: Program, static_inputs: Mapping[str, np.ndarray]) -> Callable:
    """fn(params, *traced_inputs) for the inputs not in `static_inputs`, in graph-input order."""
    traced_names = [n for n in program.input_names if n not in static_inputs]

    def fn(params: Mapping[str, Value], *traced: Value) -> tuple[Value, ...]:
        return program(params, {**static_inputs, **dict(zip(traced_names, traced))})

    return fn


__all__ = ["Context", "Program", "is_static", "make_function", "resolve_ops", "static_names"]

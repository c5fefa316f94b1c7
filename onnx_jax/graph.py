"""Loader: ModelProto (or a path, or bytes) -> an immutable Graph with attributes decoded once.

The user's ModelProto is only read, never modified.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from .dtypes import to_numpy_dtype
from .errors import InvalidModelError

ModelLike = Union[onnx.ModelProto, str, os.PathLike, bytes]

STANDARD_DOMAINS = frozenset({"", "ai.onnx.ml", "ai.onnx.preview.training"})
# ops computing each output element from the input elements at its (broadcast) position
ELEMENTWISE = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitwiseAnd", "BitwiseNot", "BitwiseOr",
    "BitwiseXor", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Div", "Elu", "Equal", "Erf", "Exp",
    "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or",
    "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus",
    "Softsign", "Sqrt", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Where", "Xor",
})

# Opset-1 ops carry `consumed_inputs`, a legacy in-place hint with no effect on the result.
IGNORED_ATTRIBUTES = frozenset({"consumed_inputs"})


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: its name and, when declared, dtype and shape (ints, names or None). Those of a
    sequence or an optional are its tensors'; a map's dtype is its values' and key_dtype its keys'."""

    name: str
    dtype: np.dtype | None = None
    shape: tuple[int | str | None, ...] | None = None
    kind: str = "tensor"  # tensor, sequence, optional, map, or unknown
    key_dtype: np.dtype | None = None


@dataclass(frozen=True, eq=False)
class Node:
    op_type: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    opset: int  # the model's opset for this node's domain
    proto: onnx.NodeProto | None = field(default=None, repr=False)  # read only: for expanding functions


@dataclass(frozen=True, eq=False)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[ValueInfo, ...]  # run-time inputs; initializers are not among them
    outputs: tuple[ValueInfo, ...]
    initializers: Mapping[str, np.ndarray]
    opsets: Mapping[str, int]
    overridable: frozenset[str] = field(default=frozenset())  # initializers also listed as inputs
    functions: Mapping[tuple[str, str], onnx.FunctionProto] = field(default_factory=dict)  # model-local

    def walk(self):
        """Every node of the graph and of its subgraphs, depth first."""
        for node in self.nodes:
            yield node
            for value in node.attrs.values():
                for sub in value if isinstance(value, tuple) else (value,):
                    if isinstance(sub, Graph):
                        yield from sub.walk()


def load_model(model: ModelLike) -> tuple[onnx.ModelProto, str | None]:
    """Read a model from a ModelProto, a file path or serialized bytes; returns it with its folder."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, bytes):
        try:
            return onnx.load_from_string(model), None
        except Exception as e:
            raise InvalidModelError(f"bytes given are not a serialized ONNX model: {e}") from e
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise InvalidModelError(f"model file {path!r} does not exist")
    try:
        proto = _parse_mapped(path) if _is_binary(path) else onnx.load(path, load_external_data=False)
    except Exception as e:
        raise InvalidModelError(f"{path!r} is not a readable ONNX model: {e}") from e
    return proto, os.path.dirname(os.path.abspath(path))


def _is_binary(path: str) -> bool:
    """A non-empty file that onnx.load would read as binary protobuf (its extension names no text format)."""
    extension = os.path.splitext(path)[1]
    return onnx.serialization.registry.get_format_from_file_extension(extension) in (None, "protobuf") and bool(
        os.path.getsize(path)
    )


def _parse_mapped(path: str) -> onnx.ModelProto:
    """A binary model parsed straight from the memory-mapped file: one copy of its bytes fewer than reading the file
    first (ResNet-50's 94 MB: 139 -> 73 ms); the parsed message holds its own copy, so the mapping is closed here."""
    proto = onnx.ModelProto()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as view:
        if proto.ParseFromString(view) != len(view):
            raise ValueError("the protobuf parser stopped before the end of the file")
    return proto


def read_graph(model: ModelLike) -> Graph:
    """load_model then build_graph; errors about a model read from a file name that file."""
    proto, base_dir = load_model(model)
    try:
        return build_graph(proto, base_dir)
    except InvalidModelError as e:
        if base_dir is None:
            raise
        raise InvalidModelError(f"{os.fspath(model)}: {e}") from e


def opset_map(model: onnx.ModelProto) -> dict[str, int]:
    """The model's opset per domain; 'ai.onnx' is spelled ''."""
    opsets = {}
    for entry in model.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        opsets[domain] = entry.version
    if model.ir_version and model.ir_version < 3 and "" not in opsets:
        opsets[""] = 1
    return opsets


def build_graph(model: onnx.ModelProto, base_dir: str | None = None) -> Graph:
    """The immutable Graph of a model."""
    if not model.HasField("graph"):
        raise InvalidModelError("the model has no graph")
    opsets = opset_map(model)
    newest = onnx.defs.onnx_opset_version()
    if opsets.get("", 0) > newest:
        raise InvalidModelError(f"the model uses ai.onnx opset {opsets['']}; the newest this onnx knows is {newest}")
    graph = _graph(model.graph, opsets, base_dir)
    check_names(graph)
    functions = {(f.domain, f.name): f for f in model.functions}
    return dataclasses.replace(graph, functions=MappingProxyType(functions)) if functions else graph


def check_names(graph: Graph, outer: frozenset[str] = frozenset()) -> None:
    """Every value is defined once, before it is read; every output is produced. Subgraphs see `outer`."""
    defined = set(outer)
    local: set[str] = set()
    for name in (*(i.name for i in graph.inputs), *graph.initializers):
        if name in local:
            raise InvalidModelError(f"graph {graph.name!r}: {name!r} is defined twice (input and initializer?)")
        local.add(name)
    defined |= local
    producers = {out: node for node in graph.nodes for out in node.outputs if out}
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in defined:
                later = producers.get(name)
                raise InvalidModelError(
                    f"node {node.name!r} ({node.op_type}) reads {name!r} before node {later.name!r} produces it: "
                    "the graph has a cycle or is not topologically sorted"
                    if later is not None
                    else f"node {node.name!r} ({node.op_type}) reads {name!r}, which no node, input or initializer defines"
                )
        for value in node.attrs.values():
            for sub in value if isinstance(value, tuple) else (value,):
                if isinstance(sub, Graph):
                    check_names(sub, frozenset(defined))
        for name in node.outputs:
            if name and name in local:
                raise InvalidModelError(f"node {node.name!r} ({node.op_type}) defines {name!r}, which is already defined")
            local.add(name)
            defined.add(name)
    for out in graph.outputs:
        if out.name not in defined:
            raise InvalidModelError(f"graph output {out.name!r} is not produced by any node, input or initializer")


def function_graph(function: onnx.FunctionProto, call: Node, opsets: Mapping[str, int]) -> Graph:
    """The body of `function` as a Graph, with the caller's attributes bound to its attribute references."""
    given = {a.name: a for a in call.proto.attribute} if call.proto is not None else {}
    defaults = {a.name: a for a in function.attribute_proto}
    nodes = []
    for proto in function.node:
        node = onnx.NodeProto()
        node.CopyFrom(proto)
        del node.attribute[:]
        for attr in proto.attribute:
            if not attr.ref_attr_name:
                node.attribute.append(attr)
            elif (bound := given.get(attr.ref_attr_name, defaults.get(attr.ref_attr_name))) is not None:
                node.attribute.append(bound)
                node.attribute[-1].name = attr.name
        nodes.append(node)
    body = onnx.helper.make_graph(
        nodes,
        f"{call.op_type}:{call.name}",
        [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in function.input],
        [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in function.output],
    )
    own = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in function.opset_import}
    return _graph(body, {**opsets, **own}, None)


def _graph(proto: onnx.GraphProto, opsets: Mapping[str, int], base_dir: str | None) -> Graph:
    initializers: dict[str, np.ndarray] = {}
    named = [(t.name, t, _tensor) for t in proto.initializer]
    named += [(t.values.name, t, _sparse_tensor) for t in proto.sparse_initializer]
    for name, tensor, read in named:
        if name in initializers:
            raise InvalidModelError(f"graph {proto.name!r}: two initializers are named {name!r}")
        initializers[name] = read(tensor, base_dir)
    nodes = tuple(_node(n, i, opsets, base_dir) for i, n in enumerate(proto.node))
    listed = {i.name for i in proto.input}
    return Graph(
        name=proto.name,
        nodes=nodes,
        inputs=tuple(_value_info(v) for v in proto.input if v.name not in initializers),
        outputs=tuple(_value_info(v) for v in proto.output),
        initializers=MappingProxyType(initializers),
        opsets=MappingProxyType(dict(opsets)),
        overridable=frozenset(listed & initializers.keys()),
    )


def _node(proto: onnx.NodeProto, index: int, opsets: Mapping[str, int], base_dir: str | None) -> Node:
    domain = "" if proto.domain == "ai.onnx" else proto.domain
    name = proto.name or f"{proto.op_type}_{index}"
    if domain not in opsets:
        raise InvalidModelError(
            f"node {name!r} ({proto.op_type}) uses domain {domain or 'ai.onnx'!r}, "
            "which the model does not import in opset_import"
        )
    schema = get_schema(proto.op_type, domain, opsets[domain])
    attrs = _schema_defaults(schema)
    for attr in proto.attribute:
        if attr.name in IGNORED_ATTRIBUTES:
            continue
        if attr.ref_attr_name:
            raise InvalidModelError(f"node {name!r}: attribute reference {attr.name!r} outside a function")
        expected = schema.attributes.get(attr.name) if schema is not None else None
        if expected is not None and int(expected.type.value) != attr.type:
            raise InvalidModelError(
                f"node {name!r} ({proto.op_type}): attribute {attr.name!r} must be "
                f"{expected.type.name}, got {AttributeProto.AttributeType.Name(attr.type)}"
            )
        attrs[attr.name] = _attribute(attr, opsets, base_dir)
    return Node(
        op_type=proto.op_type,
        domain=domain,
        name=name,
        inputs=tuple(proto.input),
        outputs=tuple(proto.output),
        attrs=MappingProxyType(attrs),
        opset=opsets[domain],
        proto=proto,
    )


def get_schema(op_type: str, domain: str, opset: int) -> onnx.defs.OpSchema | None:
    """The schema in force for an op at the model's opset, or None when onnx.defs has none."""
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None


def _schema_defaults(schema: onnx.defs.OpSchema | None) -> dict[str, Any]:
    """Attribute defaults declared by the op's schema, decoded."""
    if schema is None:
        return {}
    return {
        name: _attribute(a.default_value, {}, None)
        for name, a in schema.attributes.items()
        if a.default_value.type != AttributeProto.UNDEFINED and name not in IGNORED_ATTRIBUTES
    }


def _attribute(attr: AttributeProto, opsets: Mapping[str, int], base_dir: str | None) -> Any:
    kind = attr.type
    if kind == AttributeProto.FLOAT:
        return float(attr.f)
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.STRING:
        return _text(attr.s)
    if kind == AttributeProto.TENSOR:
        return _tensor(attr.t, base_dir)
    if kind == AttributeProto.SPARSE_TENSOR:
        return _sparse_tensor(attr.sparse_tensor, base_dir)
    if kind == AttributeProto.GRAPH:
        return _graph(attr.g, opsets, base_dir)
    if kind == AttributeProto.FLOATS:
        return tuple(float(f) for f in attr.floats)
    if kind == AttributeProto.INTS:
        return tuple(int(i) for i in attr.ints)
    if kind == AttributeProto.STRINGS:
        return tuple(_text(s) for s in attr.strings)
    if kind == AttributeProto.TENSORS:
        return tuple(_tensor(t, base_dir) for t in attr.tensors)
    if kind == AttributeProto.GRAPHS:
        return tuple(_graph(g, opsets, base_dir) for g in attr.graphs)
    if kind == AttributeProto.TYPE_PROTO:
        return attr.tp
    if kind == AttributeProto.TYPE_PROTOS:
        return tuple(attr.type_protos)
    raise InvalidModelError(f"attribute {attr.name!r} has an unknown type {kind}")


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _tensor(proto: onnx.TensorProto, base_dir: str | None) -> np.ndarray:
    if proto.data_location == onnx.TensorProto.EXTERNAL and base_dir is None:
        raise InvalidModelError(
            f"tensor {proto.name!r} is stored in an external file: pass the model's path (not a ModelProto or bytes) "
            "so its data can be found beside it, or load it with onnx.load(path) first"
        )
    try:
        array = numpy_helper.to_array(proto, base_dir or "")
    except Exception as e:
        raise InvalidModelError(f"tensor {proto.name!r} cannot be read: {e}") from e
    array.flags.writeable = False
    return array


def _sparse_tensor(proto: onnx.SparseTensorProto, base_dir: str | None) -> np.ndarray:
    values = _tensor(proto.values, base_dir)
    indices = numpy_helper.to_array(proto.indices)
    dense = np.zeros(tuple(proto.dims), dtype=values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    dense.flags.writeable = False
    return dense


def _value_info(proto: onnx.ValueInfoProto) -> ValueInfo:
    """A declared input or output; a sequence's (or an optional's) dtype and shape are those of its tensors."""
    t = proto.type
    which = t.WhichOneof("value")
    if which == "map_type":
        return ValueInfo(proto.name, _tensor_type(t.map_type.value_type)[0], kind="map",
                         key_dtype=to_numpy_dtype(t.map_type.key_type))
    if which == "optional_type" and t.optional_type.elem_type.HasField("sequence_type"):
        t, which = t.optional_type.elem_type, "sequence_type"  # an optional sequence: a list, or None
    if which == "sequence_type":
        return ValueInfo(proto.name, *_tensor_type(t.sequence_type.elem_type), kind="sequence")
    if which == "optional_type":
        return ValueInfo(proto.name, *_tensor_type(t.optional_type.elem_type), kind="optional")
    kinds = {"tensor_type": "tensor", "sparse_tensor_type": "tensor"}
    return ValueInfo(proto.name, *_tensor_type(t), kind=kinds.get(which, "unknown"))


def _tensor_type(t: onnx.TypeProto) -> tuple[np.dtype | None, tuple[int | str | None, ...] | None]:
    """The dtype and shape a tensor type declares, each None where it does not (or t is no tensor type)."""
    if not t.HasField("tensor_type"):
        return None, None
    tt = t.tensor_type
    dtype = to_numpy_dtype(tt.elem_type) if tt.elem_type else None
    if not tt.HasField("shape"):
        return dtype, None
    return dtype, tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)

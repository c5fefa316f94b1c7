"""Graph rewrites done once at prepare: the same results, less work per call (measured in docs/performance.md).

Each rewrite takes a Graph and returns a new one; the user's model and the input Graph are left alone.
Rewritten nodes keep their names, so errors still point at the user's nodes.
"""

from __future__ import annotations

import collections
from dataclasses import replace

import numpy as np

from .compiler import Program
from .dtypes import is_float, x64
from .graph import ELEMENTWISE, Graph, Node
from .registry import REGISTRY, Registry

INTERNAL_DOMAIN = "onnx_jax"  # ops that only the rewrites below create


def optimize(graph: Graph, registry: Registry = REGISTRY) -> Graph:
    """The inference rewrites: what is computed from weights and constants alone computed once, zero Pads and
    BatchNormalizations folded into the Conv beside them, channels-last conv weights, 1x1 convs of channel
    concatenations as sums, Gemm weights stored the way they are multiplied, activations that a convolution and
    other nodes read written once."""
    graph = fold_batchnorm(fold_pads_into_convs(fold_weight_expressions(graph, registry)))
    return materialized_shared_activations(untransposed_gemm_weights(convs_over_concats(channels_last_convs(graph))))


def fold_weight_expressions(graph: Graph, registry: Registry = REGISTRY) -> Graph:
    """Nodes that compute from weights and constants only (the Transpose of a tied embedding, the
    DequantizeLinear of int8 weights, Casts, the pads an exporter computes for a Pad, ...) are evaluated here
    once; their outputs become initializers.

    For `to_jax` weights are traced parameters, so these nodes would run on every call; and later rewrites
    see the folded values. A node whose outputs are much larger than its inputs (Expand, Tile,
    ConstantOfShape) is left to run, so weights do not grow.
    """
    program = Program(graph, registry, fold_weights=True)
    known: dict[str, np.ndarray] = dict(graph.initializers)
    folded: set[Node] = set()
    with x64():
        for node in graph.nodes:
            reads = [n for n in node.inputs if n]
            if not all(n in known for n in reads) or not (reads or node.op_type == "Constant"):
                continue
            results = program.fold_node(node, known)
            if results is None or any(r.dtype == object for r in results):
                continue
            if sum(r.nbytes for r in results) > 2 * sum(known[n].nbytes for n in reads) + 2**16:
                continue
            known.update((name, value) for name, value in zip(node.outputs, results) if name)
            folded.add(node)
    if not folded:
        return graph
    nodes = tuple(node for node in graph.nodes if node not in folded)
    return _without_unread(replace(graph, nodes=nodes, initializers=known))


def fold_pads_into_convs(graph: Graph) -> Graph:
    """A zero Pad of the spatial axes that only Convs read becomes part of their `pads` (exporters of
    TensorFlow-style 'same' padding write one before every Conv): the padding is then fused into the
    convolution instead of copied out in the channels-first layout."""
    readers, producer = _readers(graph), {out: node for node in graph.nodes for out in node.outputs}
    convs_of = collections.defaultdict(list)
    for node in graph.nodes:
        if node.op_type == "Conv" and node.domain == "" and node.inputs and node.inputs[0] in producer:
            convs_of[node.inputs[0]].append(node)
    replaced: dict[Node, Node | None] = {}
    for name, convs in convs_of.items():
        pad = producer[name]
        if len(convs) != readers[name] or pad.op_type != "Pad" or pad.domain != "":
            continue
        weight = graph.initializers.get(convs[0].inputs[1])
        spatial = None if weight is None else _spatial_pads(pad, graph.initializers, weight.ndim)
        if spatial is None or any(c.attrs.get("auto_pad", "NOTSET") != "NOTSET" for c in convs):
            continue
        replaced[pad] = None
        for conv in convs:
            old = conv.attrs.get("pads") or (0,) * len(spatial)
            pads = tuple(int(a) + int(b) for a, b in zip(old, spatial))
            replaced[conv] = replace(conv, inputs=(pad.inputs[0], *conv.inputs[1:]), attrs={**conv.attrs, "pads": pads})
    if not replaced:
        return graph
    nodes = tuple(replaced.get(node, node) for node in graph.nodes if replaced.get(node, node) is not None)
    return _without_unread(replace(graph, nodes=nodes))


def _spatial_pads(pad: Node, inits: dict[str, np.ndarray], rank: int) -> tuple[int, ...] | None:
    """A Pad's widths in Conv's `pads` order (begins, then ends, of the spatial axes) when it is a zero
    constant pad of spatial axes only, for a Conv weight of `rank`; None otherwise."""
    if pad.attrs.get("mode", "constant") != "constant" or rank < 3:
        return None
    if "paddings" in pad.attrs or "pads" in pad.attrs:  # Pad-1 and Pad-2 take attributes
        widths, value, axes = pad.attrs.get("paddings", pad.attrs.get("pads")), pad.attrs.get("value", 0.0), None
    else:
        names = (*pad.inputs, "", "", "")[1:4]
        if not all(n in inits or not n for n in names) or not names[0]:
            return None
        widths, value, axes = (inits[n] if n else None for n in names)
    if value is not None and np.any(np.asarray(value) != 0):
        return None
    widths = [int(w) for w in np.asarray(widths).reshape(-1)]
    axes = range(rank) if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    if len(widths) != 2 * len(axes) or any(w < 0 for w in widths):
        return None
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a], full[rank + a] = widths[i], widths[len(axes) + i]
    if any(full[a] or full[rank + a] for a in (0, 1)):
        return None
    return (*full[2:rank], *full[rank + 2:])


def fold_batchnorm(graph: Graph) -> Graph:
    """Conv followed by inference BatchNormalization, all parameters constant, becomes one Conv."""
    readers = _readers(graph)
    inits, taken = dict(graph.initializers), _names(graph)
    producer = {out: node for node in graph.nodes for out in node.outputs}
    folded: dict[Node, Node | None] = {}  # old node -> its replacement (None: dropped)
    for bn in graph.nodes:
        conv = producer.get(bn.inputs[0]) if bn.inputs else None
        if not _is_foldable(bn, conv, readers, graph) or conv in folded:
            continue
        w, b = inits[conv.inputs[1]], _optional(conv.inputs, 2)
        scale, bias, mean, var = (inits[n].astype(np.float64) for n in bn.inputs[1:5])
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        bias0 = inits[b].astype(np.float64) if b else 0.0
        weight_name = _fresh(f"{conv.inputs[1]}/bn_folded", taken)
        inits[weight_name] = (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        bias_name = _fresh(f"{b or conv.name}/bn_folded_bias", taken)
        inits[bias_name] = ((bias0 - mean) * factor + bias).astype(w.dtype)
        folded[conv] = replace(conv, inputs=(conv.inputs[0], weight_name, bias_name), outputs=(bn.outputs[0],))
        folded[bn] = None
    if not folded:
        return graph
    nodes = tuple(folded.get(node, node) for node in graph.nodes if folded.get(node, node) is not None)
    return _without_unread(replace(graph, nodes=nodes, initializers=inits))


def channels_last_convs(graph: Graph) -> Graph:
    """Convs with constant float weights read a channels-last copy of them, transposed here once.

    XLA's CPU convolution works channels-last: given ONNX's (O, I, spatial...) weights it transposes them on
    every call; the internal op takes (spatial..., I, O) weights and turns 1x1 convolutions into matmuls.
    """
    moved = _relayout_weights(
        graph, "channels_last",
        wants=lambda node, w: node.op_type == "Conv" and 3 <= w.ndim <= 5,
        layout=lambda w: np.moveaxis(w, (0, 1), (-1, -2)),
        rewrite=lambda node: replace(node, domain=INTERNAL_DOMAIN, opset=1),
    )
    return graph if moved is graph else replace(moved, opsets={**graph.opsets, INTERNAL_DOMAIN: 1})


def convs_over_concats(graph: Graph) -> Graph:
    """A channels-last 1x1 Conv (group 1, no padding, float32) that alone reads a channel Concat becomes one
    ConcatConv: the sum of the pieces' 1x1 convolutions. The concatenation is never written, and XLA no longer
    fuses the pieces' producers into its loop (fastestdet's SPP block: three chained 5x5 depthwise convolutions
    recomputed there, unvectorized)."""
    readers, producer = _readers(graph), {out: node for node in graph.nodes for out in node.outputs}
    replaced: dict[Node, Node | None] = {}
    for conv in graph.nodes:
        concat = producer.get(conv.inputs[0]) if conv.inputs else None
        if not _is_pointwise(conv, graph.initializers) or concat is None or readers[conv.inputs[0]] != 1:
            continue
        rank = graph.initializers[conv.inputs[1]].ndim
        if concat.op_type != "Concat" or concat.domain != "" or concat.attrs.get("axis", 1) % rank != 1:
            continue
        if not all(concat.inputs):
            continue
        replaced[concat] = None  # its one reader is this conv
        inputs = (conv.inputs[1], _optional(conv.inputs, 2), *concat.inputs)
        attrs = {"strides": conv.attrs["strides"]} if "strides" in conv.attrs else {}
        replaced[conv] = replace(conv, op_type="ConcatConv", inputs=inputs, attrs=attrs)
    if not replaced:
        return graph
    return replace(graph, nodes=tuple(replaced.get(n, n) for n in graph.nodes if replaced.get(n, n) is not None))


# ops lowered to XLA's convolutions and dots, which its fusion never duplicates: their inputs are written out
_PRODUCTS = frozenset({"Conv", "ConcatConv", "ConvTranspose", "Gemm", "MatMul"})


def materialized_shared_activations(graph: Graph) -> Graph:
    """An elementwise node's output that a convolution or matmul reads beside other nodes is read by all of them
    through an internal Materialized node (its value, written once; see ops/elementwise.py): XLA's fusion would
    otherwise recompute it inside the other readers, and down a chain of residual blocks recompute every earlier
    block's sum inside each later one (ResNet-50 at batch 8 took 1.17x the time)."""
    producer = {out: node for node in graph.nodes for out in node.outputs if out}
    readers: dict[str, list[Node]] = collections.defaultdict(list)
    for node in graph.nodes:
        for name in dict.fromkeys(node.inputs):
            if name and node.op_type not in ("Shape", "Size"):  # those read no values
                readers[name].append(node)
    top = set(graph.nodes)
    nested = {n for node in graph.walk() if node not in top for n in node.inputs}  # read inside subgraphs
    outputs = {o.name for o in graph.outputs}
    taken = _names(graph)
    stored: dict[str, str] = {}
    added: dict[Node, Node] = {}
    for name, nodes in readers.items():
        made_by = producer.get(name)
        if (made_by is None or made_by.op_type not in ELEMENTWISE or made_by.domain != "" or len(nodes) < 2
                or name in outputs or name in nested):
            continue
        products = sum(n.op_type in _PRODUCTS for n in nodes)
        if not 0 < products < len(nodes):
            continue
        stored[name] = _fresh(f"{name}/materialized", taken)
        convs = any(n.domain == INTERNAL_DOMAIN and n.op_type in ("Conv", "ConcatConv") for n in nodes)
        added[made_by] = Node("Materialized", INTERNAL_DOMAIN, made_by.name, (name,), (stored[name],),
                              {"channels_last": 1} if convs else {}, 1)
    if not stored:
        return graph
    nodes = []
    for node in graph.nodes:
        reads = tuple(stored.get(n, n) for n in node.inputs)
        nodes.append(node if reads == node.inputs else replace(node, inputs=reads))
        if node in added:
            nodes.append(added[node])
    return replace(graph, nodes=tuple(nodes), opsets={**graph.opsets, INTERNAL_DOMAIN: 1})


def _is_pointwise(conv: Node, inits: dict[str, np.ndarray]) -> bool:
    """An internal (channels-last) Conv with a constant float32 1x1 weight, group 1 and no padding."""
    if conv.op_type != "Conv" or conv.domain != INTERNAL_DOMAIN or conv.inputs[1] not in inits:
        return False
    w = inits[conv.inputs[1]]
    return (w.dtype == np.float32 and all(k == 1 for k in w.shape[:-2]) and conv.attrs.get("group", 1) == 1
            and conv.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and not any(conv.attrs.get("pads") or ()))


def untransposed_gemm_weights(graph: Graph) -> Graph:
    """Gemm with transB=1 on a constant B (every torch Linear) gets B transposed here once.

    At batch 1 XLA's CPU matrix-vector product copies a transposed weight on every call (15x slower for a
    512x2048 Linear); stored (K, N) it is read in place.
    """
    return _relayout_weights(
        graph, "transposed",
        wants=lambda node, w: node.op_type == "Gemm" and bool(node.attrs.get("transB")) and w.ndim == 2,
        layout=lambda w: w.T,
        rewrite=lambda node: replace(node, attrs={**node.attrs, "transB": 0}),
    )


def _relayout_weights(graph: Graph, suffix: str, *, wants, layout, rewrite) -> Graph:
    """Default-domain nodes whose second input is a constant float weight they `want` read a copy of it in
    another `layout`, made once (shared by every node reading the same weight); each node is `rewrite`n."""
    inits, taken = dict(graph.initializers), _names(graph)
    moved: dict[str, str] = {}
    nodes = []
    for node in graph.nodes:
        weight = node.inputs[1] if node.domain == "" and len(node.inputs) > 1 else None
        if weight not in inits or not is_float(inits[weight].dtype) or not wants(node, inits[weight]):
            nodes.append(node)
            continue
        if weight not in moved:
            moved[weight] = _fresh(f"{weight}/{suffix}", taken)
            inits[moved[weight]] = np.ascontiguousarray(layout(inits[weight]))
        nodes.append(rewrite(replace(node, inputs=(node.inputs[0], moved[weight], *node.inputs[2:]))))
    if not moved:
        return graph
    return _without_unread(replace(graph, nodes=tuple(nodes), initializers=inits))


def _is_foldable(bn: Node, conv: Node | None, readers: collections.Counter, graph: Graph) -> bool:
    if bn.op_type != "BatchNormalization" or bn.domain != "" or conv is None:
        return False
    if conv.op_type != "Conv" or conv.domain != "" or readers[bn.inputs[0]] != 1:
        return False
    if len([o for o in bn.outputs if o]) != 1 or bn.attrs.get("training_mode", 0) or bn.attrs.get("spatial", 1) != 1:
        return False
    constants = [conv.inputs[1], *bn.inputs[1:5]] + ([b] if (b := _optional(conv.inputs, 2)) else [])
    inits = graph.initializers
    return all(n in inits and is_float(inits[n].dtype) for n in constants)


def _optional(inputs: tuple[str, ...], index: int) -> str:
    return inputs[index] if len(inputs) > index else ""


def _readers(graph: Graph) -> collections.Counter:
    """How often each name is read: by nodes (subgraphs included) and as a graph output."""
    counts = collections.Counter(n for node in graph.walk() for n in node.inputs if n)
    counts.update(o.name for o in graph.outputs)
    return counts


def _without_unread(graph: Graph) -> Graph:
    readers = _readers(graph)
    kept = {n: a for n, a in graph.initializers.items() if readers[n]}
    return replace(graph, initializers=kept)


def _names(graph: Graph) -> set[str]:
    names = set(graph.initializers) | {i.name for i in graph.inputs}
    names.update(n for node in graph.walk() for n in (*node.inputs, *node.outputs))
    return names


def _fresh(base: str, taken: set[str]) -> str:
    """A name no value of the graph has yet (added to `taken`)."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name

"""Running a large batch as a loop over slices of it, where the graph treats each sample on its own.

XLA's CPU runtime allocates an executable's temporaries afresh on every run, as one block. Above glibc's largest
mmap threshold (32 MB) that block is mapped from the kernel and page-faulted in again on every call, from both
worker threads, and the activations no longer stay in cache: MobileNetV2 at batch 8 (47 MB of temporaries) took
0.63-0.77x the time as a loop over slices of 4 samples. Slicing is only sound when every node acts on each sample
of axis 0 alone, the same way at both batch sizes: `per_sample` checks that on the values of two traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .compiler import is_static, subgraphs
from .dtypes import is_float
from .graph import ELEMENTWISE, Graph, Node
from .optimize import INTERNAL_DOMAIN

MMAP_THRESHOLD = 32 * 2**20  # glibc's largest dynamic mmap threshold: bigger blocks are mapped on every run

BATCH, SAME, DIFFERS = "batch", "same", "differs"  # a value: carries the batch on axis 0; equal in both traces; not

# ops over each sample's own axes: the first input carries the batch, the others are weights
_SAMPLEWISE = frozenset({
    "AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "DepthToSpace", "GlobalAveragePool",
    "GlobalLpPool", "GlobalMaxPool", "InstanceNormalization", "LpPool", "LRN", "MaxPool", "SpaceToDepth",
})
_REDUCTIONS = frozenset({
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
    "ReduceSum", "ReduceSumSquare",
})


def micro_batch(batch: int, temp_bytes: int) -> int | None:
    """The samples per slice that bring the temporaries under MMAP_THRESHOLD (assuming they scale with the batch):
    the largest divisor of `batch` that does, else 1; None when the whole batch already fits."""
    if batch < 2 or temp_bytes <= MMAP_THRESHOLD:
        return None
    return max(d for d in range(1, batch) if batch % d == 0 and (d == 1 or temp_bytes * d <= MMAP_THRESHOLD * batch))


def part_slice(part: int, micro: int) -> int | None:
    """The samples per slice for a core's part of a split batch: the largest divisor of `part` up to `micro` that
    leaves two or more slices; None for a part of one sample."""
    return max((d for d in range(1, min(micro, part - 1) + 1) if part % d == 0), default=None)


def per_sample(graph: Graph, whole: Mapping[str, Any], sliced: Mapping[str, Any], batched: frozenset[str],
               sizes: tuple[int, int]) -> bool:
    """True when the graph, traced on the whole batch (`whole`: every value by name) and on a slice of it
    (`sliced`), computes each sample from that sample alone, the same way in both: `batched` inputs carry the batch
    on axis 0 (`sizes`: the two traces' batch sizes), everything else is shared. A value that carries the batch
    keeps each sample's rows of axis 0 together, in order; every op's rule keeps it so. Conservative: an op it does
    not know, or a subgraph, answers False."""
    if set(whole) != set(sliced):
        return False
    produced = {out for node in graph.nodes for out in node.outputs if out}
    kinds = {name: BATCH if name in batched else SAME for name in whole if name not in produced}
    kinds[""] = SAME
    for node in graph.nodes:
        inputs = [kinds.get(name) for name in node.inputs]
        if None in inputs or any(isinstance(whole.get(name), list) for name in node.inputs):
            return False
        outputs = [out for out in node.outputs if out]
        if all(is_static(whole.get(out)) and is_static(sliced.get(out)) for out in outputs):
            kinds.update((out, _static_kind(whole.get(out), sliced.get(out), sizes)) for out in outputs)
            continue  # trace-time values (a Shape, a folded constant): compared, not computed per sample
        if subgraphs(node) or _makes_8bit_floats(outputs, whole):
            return False
        if not _acts_per_sample(node, inputs, whole, sliced, sizes):
            return False
        kinds.update((out, BATCH if BATCH in inputs or DIFFERS in inputs else SAME) for out in outputs)
    return all(kinds.get(o.name) == BATCH for o in graph.outputs) and all(
        _consistent(kind, whole[name], sliced[name], sizes) for name, kind in kinds.items() if name
    )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.all((a == b) | ((a != a) & (b != b))))


def _static_kind(a: Any, b: Any, sizes: tuple[int, int]) -> str:
    """A trace-time value in both traces: SAME where equal; BATCH where it repeats one sample's rows once per
    sample in both (zero token types or position ids expanded to the batch from its Shape); else DIFFERS."""
    if _equal(a, b):
        return SAME
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and a.ndim == b.ndim >= 1:
        (whole, sliced), rows = sizes, a.shape[0] // sizes[0]
        if rows and a.shape[0] == rows * whole and b.shape[0] == rows * sliced and a.shape[1:] == b.shape[1:]:
            sample = a[:rows]
            if _equal(a, np.tile(sample, (whole,) + (1,) * (a.ndim - 1))) and _equal(
                    b, np.tile(sample, (sliced,) + (1,) * (b.ndim - 1))):
                return BATCH
    return DIFFERS


def _consistent(kind: str, a: Any, b: Any, sizes: tuple[int, int]) -> bool:
    """A batch value has the same whole number of rows per sample on axis 0 in both traces (several where a
    Reshape merged the batch with the axes after it: attention heads) and the same other axes; a shared traced
    value has one shape."""
    if is_static(a) and kind != BATCH:
        return True
    sa, sb = tuple(getattr(a, "shape", ())), tuple(getattr(b, "shape", ()))
    if kind == BATCH:
        whole, sliced = sizes
        return (len(sa) >= 1 and len(sa) == len(sb) and sa[1:] == sb[1:]
                and sa[0] % whole == 0 and sa[0] * sliced == sb[0] * whole)
    return sa == sb


def _makes_8bit_floats(outputs: list[str], whole: Mapping[str, Any]) -> bool:
    """XLA's CPU backend converts to 8-bit floats differently inside a loop: float32 -1e-9 to float8_e4m3fnuz is 0 at
    the top level (no negative zero in that type) but NaN inside lax.map."""
    dtypes = [np.dtype(whole[out].dtype) for out in outputs if hasattr(whole[out], "dtype")]
    return any(is_float(dtype) and dtype.itemsize == 1 for dtype in dtypes)


def _acts_per_sample(node: Node, kinds: list[str], whole: Mapping[str, Any], sliced: Mapping[str, Any],
                     sizes: tuple[int, int]) -> bool:
    """Whether `node` computes each sample of its batch inputs from that sample alone (kinds: one per input)."""
    op, attrs = node.op_type, node.attrs
    if op in ("Gather", "GatherND") and kinds == [BATCH, DIFFERS] and attrs.get("axis", 0) == 0:
        return not attrs.get("batch_dims", 0) and _picks_own_rows(op, *node.inputs, whole, sliced, sizes)
    if DIFFERS in kinds and op not in ("Reshape", "Expand") or op.startswith("Random") or op in ("Bernoulli",
                                                                                              "Multinomial"):
        return False
    if BATCH not in kinds:
        return True  # a computation of weights alone: shared by every sample
    ranks = [np.ndim(whole[n]) if n else 0 for n in node.inputs]
    rank = max(ranks, default=0)
    if any(k == BATCH and r == 0 for k, r in zip(kinds, ranks)):
        return False
    if node.domain == INTERNAL_DOMAIN:
        if op == "Conv":
            return kinds[0] == BATCH and set(kinds[1:]) <= {SAME}
        if op == "ConcatConv":  # (weight, bias, *pieces)
            return set(kinds[:2]) <= {SAME} and all(k == BATCH for k in kinds[2:])
        if op == "Materialized":
            return kinds[0] == BATCH
        return False
    if node.domain not in ("", "ai.onnx"):
        return False
    if op in ELEMENTWISE:
        # a shared operand must broadcast along the batch axis: fewer axes, or a first axis of 1
        return all(r == rank if k == BATCH else (r < rank or np.shape(whole[n])[0] == 1)
                   for n, k, r in zip(node.inputs, kinds, ranks) if n)
    if op in _SAMPLEWISE:
        if op == "MaxPool" and len([o for o in node.outputs if o]) > 1:  # its indices count across the batch
            return False
        if op == "BatchNormalization" and (attrs.get("training_mode", 0) or len(node.outputs) > 1):
            return False
        return kinds[0] == BATCH and set(kinds[1:]) <= {SAME}
    if op == "Reshape":  # row-major and keeping axis 0's size (checked on both traces' shapes): per sample
        return kinds[0] == BATCH
    if op == "Flatten":  # axis 0 becomes the batch times the axes before `axis`: rows kept together (as Reshape)
        axis = attrs.get("axis", 1)
        return kinds[0] == BATCH and (axis + rank if axis < 0 else axis) != 0
    if op == "Expand":  # a broadcast of a sample or of a shared value along a batch of the given shape's size
        return kinds[0] in (BATCH, SAME) and kinds[1] != BATCH and (
            kinds[0] == SAME or np.size(whole[node.inputs[1]]) == ranks[0])
    if op == "Transpose":
        perm = attrs.get("perm")
        return kinds[0] == BATCH and perm is not None and perm[0] == 0
    if op in ("Softmax", "LogSoftmax", "Hardmax"):
        return kinds[0] == BATCH and attrs.get("axis", -1 if node.opset >= 13 else 1) % rank != 0
    if op == "LayerNormalization":
        return kinds[0] == BATCH and set(kinds[1:]) <= {SAME} and attrs.get("axis", -1) % rank != 0
    if op == "MatMul":
        return _matmul_per_sample(kinds, ranks)
    if op == "Gemm":
        c_ok = len(kinds) < 3 or ranks[2] < 2 or np.shape(whole[node.inputs[2]])[0] == 1
        return kinds[0] == BATCH and not attrs.get("transA", 0) and set(kinds[1:]) <= {SAME} and c_ok
    if op == "Concat":
        return all(k == BATCH for n, k in zip(node.inputs, kinds) if n) and attrs["axis"] % rank != 0
    if op == "Gather" and kinds == [SAME, BATCH]:  # an embedding lookup of each sample's ids
        return attrs.get("axis", 0) == 0
    if op in ("Split", "Slice", "Unsqueeze", "Squeeze", "Pad", "Gather", "ArgMax", "ArgMin") or op in _REDUCTIONS:
        return kinds[0] == BATCH and set(kinds[1:]) <= {SAME} and _spares_axis_0(node, whole, ranks[0])
    return False


def _picks_own_rows(op: str, data: str, indices: str, whole: Mapping[str, Any], sliced: Mapping[str, Any],
                    sizes: tuple[int, int]) -> bool:
    """A Gather along axis 0 (GatherND: the first index component) of a batch value by trace-time indices that pick,
    for each sample, rows of that sample alone, by one pattern in both traces: a mask or position lookup that an
    exporter wrote as indexing with the sample's own number (mask[arange(batch)[:, None], positions])."""
    rows = np.shape(whole[data])[0] // sizes[0]
    patterns = []
    for values, size in ((whole, sizes[0]), (sliced, sizes[1])):
        index = values[indices]
        if not isinstance(index, np.ndarray) or index.ndim == 0 or index.shape[0] % size or not rows:
            return False
        own = index.astype(np.int64).reshape(size, -1, index.shape[-1] if op == "GatherND" else 1).copy()
        own[..., 0] -= np.arange(size)[:, None] * rows
        if not (own == own[:1]).all() or own[..., 0].min() < 0 or own[..., 0].max() >= rows:
            return False
        patterns.append((own[0], index.shape[1:]))
    return patterns[0][1] == patterns[1][1] and np.array_equal(patterns[0][0], patterns[1][0])


def _matmul_per_sample(kinds: list[str], ranks: list[int]) -> bool:
    """Rows of a batch (rank 2) times a shared matrix, or the batch among the leading (broadcast) axes."""
    if kinds == [BATCH, SAME] and ranks[0] >= 2 and ranks[1] <= 2:
        return True
    rank = max(ranks)
    return rank >= 3 and all(r == rank if k == BATCH else r < rank for k, r in zip(kinds, ranks))


def _spares_axis_0(node: Node, whole: Mapping[str, Any], rank: int) -> bool:
    """The op's axes (attribute or trace-time input) leave axis 0 alone: Gather along another axis, a Slice or
    Pad that does not touch axis 0, reductions and Unsqueeze/Squeeze over given axes other than 0."""
    op, attrs = node.op_type, node.attrs

    def given(index: int) -> Any:
        value = whole[node.inputs[index]] if len(node.inputs) > index and node.inputs[index] else None
        return np.asarray(value).reshape(-1).tolist() if value is not None and is_static(value) else None

    if op in ("Gather", "Split", "ArgMax", "ArgMin"):
        return attrs.get("axis", 0) % rank != 0
    if op == "Slice":
        axes = given(3) if node.opset >= 10 else attrs.get("axes")
        return axes is not None and all(a % rank != 0 for a in axes)
    if op == "Pad":
        pads, axes = (given(1), given(3)) if node.opset >= 11 else (attrs.get("pads"), None)
        if len(node.inputs) > 3 and node.inputs[3]:
            return axes is not None and all(a % rank != 0 for a in axes)
        return pads is not None and pads[0] == 0 and pads[rank] == 0
    axes = attrs.get("axes")
    if axes is None and len(node.inputs) > 1:
        axes = given(1)
    if op == "Unsqueeze":
        return axes is not None and all(a % (rank + len(axes)) != 0 for a in axes)
    return bool(axes) and all(a % rank != 0 for a in axes)

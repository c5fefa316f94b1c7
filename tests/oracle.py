"""Test helpers: build one-node models and compare onnx_jax with onnx.reference (and onnxruntime)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnx_jax
from onnx_jax.dtypes import to_onnx_dtype

TOLERANCE = {  # (rtol, atol) per dtype
    np.dtype(np.float16): (1e-3, 1e-3),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-12, 1e-12),
}


def node_model(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    n_outputs: int = 1,
    *,
    opset: int = 21,
    domain: str = "",
    initializers: dict[str, np.ndarray] | None = None,
    **attrs: Any,
) -> onnx.ModelProto:
    """A model with one node; `None` inputs become empty (omitted optional) names; `initializers` by input name."""
    names = [f"x{i}" if x is not None else "" for i, x in enumerate(inputs)]
    initializers = initializers or {}
    node = helper.make_node(op_type, names, [f"y{i}" for i in range(n_outputs)], domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        op_type.lower(),
        [
            helper.make_tensor_value_info(n, to_onnx_dtype(x.dtype), x.shape)
            for n, x in zip(names, inputs)
            if n and n not in initializers
        ],
        [helper.make_value_info(f"y{i}", onnx.TypeProto()) for i in range(n_outputs)],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid(domain, opset)] + ([helper.make_opsetid("", 21)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def run_both(model: onnx.ModelProto, inputs: Sequence[np.ndarray | None]) -> tuple[list, list]:
    """(onnx_jax outputs, onnx.reference outputs) for the model's run-time inputs."""
    inits = {t.name for t in model.graph.initializer}
    feeds = [x for x, i in zip(inputs, model.graph.node[0].input) if i and i not in inits]
    ours = onnx_jax.prepare(model).run(feeds)
    ref = ReferenceEvaluator(model).run(None, {i.name: x for i, x in zip(model.graph.input, feeds)})
    return list(ours), list(ref)


def assert_close(ours: Sequence, ref: Sequence, rtol: float | None = None, atol: float | None = None) -> None:
    """Same count, shapes, exact dtypes; values within per-dtype tolerances (exact for integers and bools)."""
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        b = np.asarray(b)
        if b.dtype.kind in "OUS":  # strings: ONNX's string tensors are object arrays
            assert a.dtype == object, f"output {i}: dtype {a.dtype} is not a string tensor"
            assert a.shape == b.shape and a.tolist() == b.astype(object).tolist(), f"output {i}: {a!r} != {b!r}"
            continue
        assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype} != reference {b.dtype}"
        assert a.shape == b.shape, f"output {i}: shape {a.shape} != reference {b.shape}"
        r, t = TOLERANCE.get(a.dtype, (0, 0))
        np.testing.assert_allclose(
            a.astype(np.float64) if a.dtype.kind == "f" else a,
            b.astype(np.float64) if b.dtype.kind == "f" else b,
            rtol=r if rtol is None else rtol,
            atol=t if atol is None else atol,
            err_msg=f"output {i}",
        )


def check_node(op_type: str, inputs: Sequence[np.ndarray | None], n_outputs: int = 1, *, rtol=None, atol=None,
               opset: int = 21, domain: str = "", **attrs: Any) -> None:
    """Run one node through onnx_jax and onnx.reference and compare."""
    model = node_model(op_type, inputs, n_outputs, opset=opset, domain=domain, **attrs)
    ours, ref = run_both(model, inputs)
    assert_close(ours, ref, rtol, atol)


def shapes(min_dims: int = 0, max_dims: int = 4, max_side: int = 5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def arrays(dtype, shape, *, low: float = -10, high: float = 10):
    """Finite arrays of a dtype; floats in [low, high]."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        elements = st.floats(low, high, width=min(dtype.itemsize * 8, 64), allow_nan=False, allow_subnormal=False)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, int(low)), min(info.max, int(high)))
    return hnp.arrays(dtype, shape, elements=elements)

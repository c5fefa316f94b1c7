"""Checked mode: out-of-range indices raise with the node's name instead of being clamped."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_jax


def gather_model(indices_static: bool):
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [4, 2])]
    inits = []
    if indices_static:
        inits.append(numpy_helper.from_array(np.array([0, 7], np.int64), "idx"))
    else:
        inputs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, [2]))
    graph = helper.make_graph([helper.make_node("Gather", ["data", "idx"], ["y"], name="pick", axis=0)], "g",
                              inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_traced_out_of_range_index_raises_naming_the_node():
    rep = onnx_jax.prepare(gather_model(False), checks=True)
    data = np.arange(8, dtype=np.float32).reshape(4, 2)
    (y,) = rep.run([data, np.array([3, -4], np.int64)])
    np.testing.assert_array_equal(y, data[[3, 0]])
    with pytest.raises(onnx_jax.InvalidInputError, match="'pick'.*'idx'"):
        rep.run([data, np.array([1, 4], np.int64)])


def test_static_out_of_range_index_raises_at_first_run():
    rep = onnx_jax.prepare(gather_model(True), checks=True)
    with pytest.raises(onnx_jax.InvalidInputError, match="'pick'"):
        rep.run([np.zeros((4, 2), np.float32)])


def test_default_mode_does_not_check():
    rep = onnx_jax.prepare(gather_model(False))
    (y,) = rep.run([np.zeros((4, 2), np.float32), np.array([1, 4], np.int64)])
    assert y.shape == (2, 2)

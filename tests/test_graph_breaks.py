"""Data-dependent shapes: host ops split the graph into compiled segments, never baking a shape."""

import jax
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_jax


def nonzero_model():
    """y = float(nonzero(relu(x))) * 2 + sum-free tail, so segments exist before and after the break."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("NonZero", ["r"], ["nz"], name="the_nonzero"),
        helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["nzf", "two"], ["y"]),
        helper.make_node("Neg", ["x"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=[two],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nonzero_in_the_middle_runs_for_any_number_of_nonzeros():
    rep = onnx_jax.prepare(nonzero_model())
    for x in ([1.0, -1.0, 2.0, 0.0], [-1.0, -2.0, -3.0, -4.0], [3.0, 3.0, 3.0, 3.0], [5.0, 0.0, 0.0, 1.0]):
        x = np.array(x, np.float32)
        y, z = rep.run([x])
        np.testing.assert_array_equal(y, np.nonzero(np.maximum(x, 0))[0][None].astype(np.float32) * 2)
        np.testing.assert_array_equal(z, -x)
    assert rep.compiled_segments > 1


def test_a_static_model_is_exactly_one_segment():
    node = helper.make_node("Add", ["a", "a"], ["b"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])])
    rep = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    rep.run([np.ones(3, np.float32)])
    rep.run([np.zeros(3, np.float32)])
    assert rep.compiled_segments == 1


def test_host_op_of_static_data_folds_into_one_segment():
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array([0, 3, 0, 4], np.int64))),
        helper.make_node("NonZero", ["c"], ["nz"]),
        helper.make_node("Shape", ["nz"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    rep = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    (y,) = rep.run([np.float32([1, 2])])
    assert y.shape == (1, 2) and rep.compiled_segments == 1


def test_under_jax_jit_a_host_op_is_a_clear_error():
    fn, params = onnx_jax.to_jax(nonzero_model())
    with pytest.raises(onnx_jax.DataDependentShapeError, match="'the_nonzero'"):
        jax.jit(fn)(params, np.ones(4, np.float32))

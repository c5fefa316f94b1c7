"""ai.onnx.preview.training optimizers against onnx.reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle import arrays, assert_close, check_node, node_model, run_both

TRAINING = "ai.onnx.preview.training"


def _tensors(data, count):
    shape = data.draw(st.sampled_from([(3,), (2, 2)]))
    return [data.draw(arrays(np.float32, shape, low=0.125, high=2)) for _ in range(count)]


@settings(max_examples=10)
@given(st.data(), st.integers(0, 3))
def test_adagrad(data, step):
    check_node("Adagrad", [np.float32(0.1), np.int64(step), *_tensors(data, 3)], 2, domain=TRAINING, opset=1,
               rtol=1e-5, atol=1e-6, decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.01)


@settings(max_examples=10)
@given(st.data(), st.integers(0, 3), st.sampled_from(["standard", "nesterov"]))
def test_momentum(data, step, mode):
    check_node("Momentum", [np.float32(0.1), np.int64(step), *_tensors(data, 3)], 2, domain=TRAINING, opset=1,
               rtol=1e-5, atol=1e-6, alpha=0.9, beta=0.5, mode=mode, norm_coefficient=0.01)


@settings(max_examples=10)
@given(st.data(), st.integers(0, 3))
def test_adam(data, step):
    inputs = [np.float32(0.1), np.int64(step), *_tensors(data, 4)]
    model = node_model("Adam", inputs, 3, domain=TRAINING, opset=1, norm_coefficient=0.01, norm_coefficient_post=0.02)
    ours, ref = run_both(model, inputs)
    # onnx.reference promotes to float64 through the int64 step count; the spec keeps X's type
    assert_close(ours, [r.astype(np.float32) for r in ref], rtol=1e-5, atol=1e-6)


def test_gradient_of_the_graph_before_it():
    from onnx import TensorProto, helper

    import onnx_jax

    nodes = [
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "a"], ["y"]),
        helper.make_node("Gradient", ["a", "b"], ["da", "db"], domain=TRAINING, xs=["a", "b"], y="y"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in "ab"],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("y", "da", "db")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(TRAINING, 1)])
    a, b = np.float32([1, 2, 3]), np.float32([4, 5, 6])
    y, da, db = onnx_jax.prepare(model).run([a, b])
    np.testing.assert_allclose(y, a * b + a)
    np.testing.assert_allclose(da, b + 1)
    np.testing.assert_allclose(db, a)

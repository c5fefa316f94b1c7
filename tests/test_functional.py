"""to_jax: the model as a pure, differentiable, batchable JAX function."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import onnx_jax


def export(module: torch.nn.Module, *args: torch.Tensor, names=("x",)) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        module, args, buffer, opset_version=17, dynamo=False, do_constant_folding=False,
        input_names=list(names), dynamic_axes={n: {0: "batch"} for n in names},
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return module, export(module, torch.randn(4, 3))


def test_params_are_the_float_weights_by_name(mlp):
    module, model = mlp
    fn, params = onnx_jax.to_jax(model)
    assert set(params) == {name for name, _ in module.named_parameters()}
    for name, value in module.named_parameters():
        np.testing.assert_array_equal(params[name], value.detach().numpy())


def test_gradients_match_torch(mlp):
    module, model = mlp
    fn, params = onnx_jax.to_jax(model)
    x = torch.randn(5, 3)
    grads = jax.grad(lambda p: jnp.sum(fn(p, x.numpy())[0] ** 2))(params)
    module.zero_grad()
    (module(x) ** 2).sum().backward()
    for name, value in module.named_parameters():
        np.testing.assert_allclose(grads[name], value.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_jit_equals_eager_and_torch(mlp):
    module, model = mlp
    fn, params = onnx_jax.to_jax(model)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    eager = fn(params, x)[0]
    jitted = jax.jit(fn)(params, x)[0]
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
    np.testing.assert_allclose(jitted, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_vmap_equals_running_each_example(mlp):
    _, model = mlp
    fn, params = onnx_jax.to_jax(model)
    xs = np.random.default_rng(1).standard_normal((7, 2, 3)).astype(np.float32)
    batched = jax.vmap(lambda x: fn(params, x)[0])(xs)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(batched[i], fn(params, x)[0], rtol=1e-5, atol=1e-7)


def test_freeze_and_fold_weights(mlp):
    _, model = mlp
    x = np.ones((2, 3), np.float32)
    fn, params = onnx_jax.to_jax(model)
    frozen_fn, trainable = onnx_jax.to_jax(model, freeze=["0.weight"])
    assert set(trainable) == set(params) - {"0.weight"}
    np.testing.assert_allclose(frozen_fn(trainable, x)[0], fn(params, x)[0])
    folded_fn, none = onnx_jax.to_jax(model, fold_weights=True)
    assert none == {}
    np.testing.assert_allclose(folded_fn({}, x)[0], fn(params, x)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="not float weights"):
        onnx_jax.to_jax(model, freeze=["nope"])


def test_inputs_by_name_and_errors(mlp):
    _, model = mlp
    fn, params = onnx_jax.to_jax(model)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(fn(params, x=x)[0], fn(params, x)[0])
    with pytest.raises(onnx_jax.InvalidInputError, match="missing"):
        fn(params)
    with pytest.raises(onnx_jax.InvalidInputError, match="unknown"):
        fn(params, x, y=x)


def test_global_x64_flag_is_left_alone(mlp):
    _, model = mlp
    before = jax.config.jax_enable_x64
    fn, params = onnx_jax.to_jax(model)
    jax.jit(fn)(params, np.ones((1, 3), np.float32))
    assert jax.config.jax_enable_x64 == before


class AttentionBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 16)
        self.norm = torch.nn.LayerNorm(16)

    def forward(self, x):
        b, t, c = x.shape
        y = self.norm(self.proj(x)).reshape(b, t, 4, 4).transpose(1, 2)
        a = torch.softmax(y @ y.transpose(-1, -2) / 2.0, -1) @ y
        return torch.nn.functional.gelu(a.transpose(1, 2).reshape(b, t, c))


def test_jax_export_with_symbolic_batch_and_sequence():
    from jax import export as jax_export

    torch.manual_seed(0)
    module = AttentionBlock()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.randn(2, 5, 16),), buffer, opset_version=17, dynamo=False,
                      do_constant_folding=False, input_names=["x"], dynamic_axes={"x": {0: "b", 1: "t"}})
    fn, params = onnx_jax.to_jax(buffer.getvalue())
    b, t = jax_export.symbolic_shape("b, t")
    exported = jax_export.export(jax.jit(lambda x: fn(params, x)))(jax.ShapeDtypeStruct((b, t, 16), jnp.float32))
    restored = jax_export.deserialize(exported.serialize())
    for shape in [(1, 3, 16), (4, 9, 16)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(restored.call(x)[0], want, rtol=1e-4, atol=1e-5)

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


@pytest.mark.parametrize("index", [0, -1, [0, 1]])
def test_jax_export_of_known_index_gather_and_mean_over_a_symbolic_axis(index):
    """The lowerings that pick a slice for known Gather indices, or a product for a mean over a long last axis, need
    concrete sizes: over a symbolic axis they keep the gather and the reduction."""
    from jax import export as jax_export
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("ReduceMean", ["xt", "last"], ["m"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("g", "m")],
        [numpy_helper.from_array(np.array(index, np.int64), "i"), numpy_helper.from_array(np.array([-1]), "last")])
    fn, params = onnx_jax.to_jax(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    b, t = jax_export.symbolic_shape("b, t")
    exported = jax_export.export(jax.jit(lambda x: fn(params, x)))(jax.ShapeDtypeStruct((b, t, 4), jnp.float32))
    for shape in [(2, 5, 4), (1, 70, 4)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        gathered, mean = exported.call(x)
        np.testing.assert_array_equal(gathered, np.take(x, np.array(index), axis=1))
        np.testing.assert_allclose(mean, x.mean(axis=1), rtol=1e-5, atol=1e-6)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)
        # distinct statistics: torch's exporter merges initializers with equal values (ones, zeros)
        for buffer in (self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var):
            buffer.data = torch.rand(4) + 0.5

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = torch.nn.functional.max_pool2d(y, 2) + torch.nn.functional.avg_pool2d(y, 2)
        return self.head(torch.flatten(y, 1))


class SmallGRU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(3, 5, batch_first=True)
        self.head = torch.nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


MODELS = {  # name -> (module factory, per-example input shape)
    "mlp": (lambda: torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)), (3,)),
    "cnn": (SmallCNN, (2, 8, 8)),
    "attention": (AttentionBlock, (5, 16)),
    "gru": (SmallGRU, (4, 3)),
}


def _exported(name):
    torch.manual_seed(0)
    factory, shape = MODELS[name]
    module = factory().eval()
    return module, shape, export(module, torch.randn(2, *shape))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_wrt_inputs_and_every_weight_match_torch(name):
    module, shape, model = _exported(name)
    fn, params = onnx_jax.to_jax(model)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)

    def loss(params, x):
        return jnp.sum(jnp.sin(fn(params, x)[0]))

    # Reverse-mode through a loop (the GRU's scan) transposes int64 loop indices after fn has returned,
    # so the caller scopes x64 around the whole gradient computation (see docs/jax_function.md).
    with jax.enable_x64(True):
        grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(params, x)
    xt = torch.from_numpy(x).requires_grad_(True)
    module.zero_grad()
    torch.sin(module(xt)).sum().backward()
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for key, value in module.named_parameters():  # BatchNorm's running statistics are params here, buffers there
        np.testing.assert_allclose(grad_params[key], value.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", ["attention", "cnn", "mlp"])
def test_gradients_without_an_x64_scope_match_torch(name):
    """Only loops need the caller's x64 scope: a plain jax.jit(jax.grad(...)) works on everything else."""
    module, shape, model = _exported(name)
    fn, params = onnx_jax.to_jax(model)
    x = np.random.default_rng(2).standard_normal((3, *shape)).astype(np.float32)
    grad_x = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(fn(params, x)[0]))))(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.sin(module(xt)).sum().backward()
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vmap_jit_and_symbolic_export_match_torch(name):
    from jax import export as jax_export

    module, shape, model = _exported(name)
    fn, params = onnx_jax.to_jax(model)
    xs = np.random.default_rng(2).standard_normal((4, 2, *shape)).astype(np.float32)
    batched = jax.vmap(lambda x: fn(params, x)[0])(xs)
    for i in range(len(xs)):
        np.testing.assert_allclose(batched[i], fn(params, xs[i])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(fn)(params, xs[0])[0], fn(params, xs[0])[0], rtol=1e-5, atol=1e-6)

    (batch,) = jax_export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    restored = jax_export.deserialize(jax_export.export(jax.jit(lambda x: fn(params, x)))(spec).serialize())
    for n in (1, 6):
        x = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(restored.call(x)[0], want, rtol=1e-4, atol=1e-5)

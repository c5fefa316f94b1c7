"""Per-example gradients of an imported ONNX model with jax.vmap(jax.grad(...)).

Usage: python examples/per_example_grads.py   (needs torch: pip install -e '.[test]')
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import torch

import onnx_jax


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), buffer, dynamo=False, do_constant_folding=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    fn, params = onnx_jax.to_jax(buffer.getvalue())

    def loss(params, x, label):
        (logits,) = fn(params, x[None])  # one example, as a batch of one
        return -jax.nn.log_softmax(logits[0])[label]

    xs = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    labels = np.arange(16) % 3
    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(params, xs, labels)
    for name, grad in per_example.items():
        print(f"{name:12s} per-example gradients {grad.shape}, norms {np.round(jnp.linalg.norm(grad.reshape(16, -1), axis=1)[:4], 3)} ...")
    mean_grad = jax.grad(lambda p: jnp.mean(jax.vmap(loss, in_axes=(None, 0, 0))(p, xs, labels)))(params)
    for name in params:
        np.testing.assert_allclose(per_example[name].mean(0), mean_grad[name], rtol=1e-4, atol=1e-6)
    print("the mean of the per-example gradients equals the gradient of the mean loss")


if __name__ == "__main__":
    main()

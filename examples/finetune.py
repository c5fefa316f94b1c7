"""Fine-tune an imported PyTorch model in JAX: export to ONNX, to_jax, then plain SGD with jax.grad.

Usage: python examples/finetune.py   (needs torch: pip install -e '.[test]')
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import torch

import onnx_jax


def exported_classifier() -> bytes:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 2),), buffer, dynamo=False, do_constant_folding=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return buffer.getvalue()


def two_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.stack([np.cos(angle) + label, np.sin(angle) * (1 - 2 * label) + 0.5 * label], 1)
    return (x + rng.normal(0, 0.1, x.shape)).astype(np.float32), label


def main() -> None:
    fn, params = onnx_jax.to_jax(exported_classifier())
    x, y = two_moons(512, np.random.default_rng(0))

    def loss(params, x, y):
        (logits,) = fn(params, x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    @jax.jit
    def sgd_step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), value

    for step in range(301):
        params, value = sgd_step(params, x, y)
        if step % 100 == 0:
            accuracy = float(jnp.mean(jnp.argmax(fn(params, x)[0], -1) == y))
            print(f"step {step:3d}  loss {float(value):.4f}  accuracy {accuracy:.3f}")
    print("trained weights keep the ONNX initializer names:", sorted(params))


if __name__ == "__main__":
    main()

"""Op families; importing this package registers every op in onnx_jax.registry.REGISTRY."""

from . import elementwise, nn, reduction, shape  # noqa: F401

"""onnx_jax: run ONNX models on JAX, and get them back as differentiable JAX functions."""

from __future__ import annotations

from . import ops as _ops  # noqa: F401  (registers every op)
from .backend import OnnxJaxBackend, OnnxJaxRep, synchronous_cpu_dispatch
from .errors import (
    DataDependentShapeError,
    InvalidInputError,
    InvalidModelError,
    NodeExecutionError,
    OnnxJaxError,
    StaticValueRequiredError,
    UnsupportedOpError,
)
from .functional import to_jax
from .registry import REGISTRY, Registry

__version__ = "0.1.0"

prepare = OnnxJaxBackend.prepare
run_model = OnnxJaxBackend.run_model
run_node = OnnxJaxBackend.run_node
supports_device = OnnxJaxBackend.supports_device
is_compatible = OnnxJaxBackend.is_compatible

synchronous_cpu_dispatch()

__all__ = [
    "DataDependentShapeError",
    "InvalidInputError",
    "InvalidModelError",
    "NodeExecutionError",
    "OnnxJaxBackend",
    "OnnxJaxError",
    "OnnxJaxRep",
    "REGISTRY",
    "Registry",
    "StaticValueRequiredError",
    "UnsupportedOpError",
    "is_compatible",
    "prepare",
    "run_model",
    "run_node",
    "supports_device",
    "to_jax",
]

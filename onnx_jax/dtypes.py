"""The one place that converts between ONNX element types and numpy/JAX dtypes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import ml_dtypes
import numpy as np
from onnx import TensorProto

_ONNX_TO_NUMPY: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.STRING: np.dtype(object),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.COMPLEX64: np.dtype(np.complex64),
    TensorProto.COMPLEX128: np.dtype(np.complex128),
    TensorProto.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    TensorProto.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    TensorProto.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    TensorProto.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    TensorProto.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    TensorProto.UINT4: np.dtype(ml_dtypes.uint4),
    TensorProto.INT4: np.dtype(ml_dtypes.int4),
    TensorProto.FLOAT4E2M1: np.dtype(ml_dtypes.float4_e2m1fn),
    TensorProto.FLOAT8E8M0: np.dtype(ml_dtypes.float8_e8m0fnu),
    TensorProto.UINT2: np.dtype(ml_dtypes.uint2),
    TensorProto.INT2: np.dtype(ml_dtypes.int2),
}
_NUMPY_TO_ONNX = {dtype: code for code, dtype in _ONNX_TO_NUMPY.items()}


def to_numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX `TensorProto.DataType` code."""
    try:
        return _ONNX_TO_NUMPY[elem_type]
    except KeyError:
        raise ValueError(f"unknown ONNX element type {elem_type}") from None


def to_onnx_dtype(dtype: np.dtype) -> int:
    """The ONNX `TensorProto.DataType` code of a numpy dtype."""
    return _NUMPY_TO_ONNX[np.dtype(dtype)]


def onnx_type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type).lower()


def is_float(dtype: np.dtype) -> bool:
    """True for real floating dtypes, ml_dtypes' narrow floats included."""
    return jax.dtypes.issubdtype(dtype, np.floating)


PRECISIONS = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} (matmul/conv precision on GPU/TPU), got {precision!r}")
    return precision


@contextlib.contextmanager
def x64(precision: str = "highest") -> Iterator[None]:
    """Scope ONNX's numerics around onnx_jax's own tracing and execution, leaving the user's config alone:
    64-bit types exist, and float32 matmuls/convolutions run at full float32 precision by default (on GPU/TPU,
    JAX's own default, precision="default", uses faster reduced-precision passes)."""
    with jax.enable_x64(True), jax.default_matmul_precision(precision):
        yield

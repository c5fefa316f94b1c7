"""The official ONNX backend test suite (onnx.backend.test), run unchanged against onnx_jax.

Known failures are listed in expected_failures.txt (see conftest.py); nothing else is excluded
but the real-model tests, which download models from the internet.
"""

import onnx.backend.test

import onnx_jax

backend_test = onnx.backend.test.BackendTest(onnx_jax, __name__)

globals().update(
    {name: case for name, case in backend_test.test_cases.items() if name != "OnnxBackendRealModelTest"}
)

"""The persistent compilation cache: executables XLA compiled, kept on disk so a new process skips the compile."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from jax._src import config as jax_config  # the scoped (context manager) form of JAX's cache options

ENV = "ONNX_JAX_CACHE_DIR"


def cache_dir() -> str | None:
    """$ONNX_JAX_CACHE_DIR when set (empty: no cache), else onnx_jax/xla in the user's cache dir."""
    value = os.environ.get(ENV)
    if value is not None:
        return value or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "onnx_jax", "xla")


@contextlib.contextmanager
def compilation_cache() -> Iterator[None]:
    """Scope onnx_jax's compiles: JAX's persistent cache in cache_dir(), every executable kept however fast it
    compiled. A cache directory the user configured for JAX wins; the user's own JAX settings stay as they were."""
    path = jax_config.compilation_cache_dir.value or cache_dir()
    if path is None:
        yield
        return
    with jax_config.compilation_cache_dir(path), jax_config.persistent_cache_min_compile_time_secs(0.0):
        yield

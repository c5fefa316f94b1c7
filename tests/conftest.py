import os

from hypothesis import HealthCheck, settings

# Tests compile thousands of tiny graphs: keep them out of the user's persistent compilation cache
# (tests/test_cache.py sets its own in subprocesses).
os.environ.setdefault("ONNX_JAX_CACHE_DIR", "")

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

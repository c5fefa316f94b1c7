#!/usr/bin/env bash
# One short GPU session's checks, in one command (docs/performance.md, "On a GPU"): versions, a smoke test,
# probes (float32 division, host<->device copies), the benchmark with onnx_jax on the GPU (full float32, then JAX's
# default reduced precision on the models with matmuls) against onnxruntime on the same machine's CPU, and the
# official backend tests' CUDA variants.
#
# Prepare (here, where the models are; .gpu/ is git-ignored):
#   python examples/benchmark.py --runs 1    # exports the benchmark models once, if not yet done
#   python examples/weightless.py strip ~/.cache/onnx_jax/bench-models .gpu/bench-models
#   cp -r ../shared/models .gpu/shared-models
# then run `bash examples/gpu_check.sh` there with .gpu beside the code; logs and JSON land in $OUT. A shorter
# follow-up run picks its parts: MODELS, DEFAULT_MODELS (either may be empty) and CONFORMANCE (a pytest -k).
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false ONNX_JAX_CACHE_DIR=""
export DEVICE=${DEVICE:-CUDA}  # DEVICE=CPU tries the script out on a machine without a GPU
py=${PYTHON:-python3}
dev=$DEVICE
transformers="bert-dynamo gpt2-dynamo llama-dynamo vit-dynamo whisper-dynamo resnet50-dynamo mobilenetv2-dynamo"
MODELS=${MODELS-one-node-add mnist-8 super-resolution-10 ultraface-rfb-320 fastestdet lstm-classifier \
image-classifier32 tiny-random-gpt2-msft treeensemble-sklearn-ml $transformers forest-100-trees}
DEFAULT_MODELS=${DEFAULT_MODELS-$transformers}
CONFORMANCE=${CONFORMANCE-_${dev,,}}
stage() { echo; echo "== $1 ($(date +%T))"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
nproc
$py -c "import jax, jaxlib, onnx, onnxruntime, numpy; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__,
'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__); print(jax.devices())"
models=$(mktemp -d)
cp .gpu/bench-models/*.onnx "$models" && $py examples/weightless.py refill "$models" || exit 1

stage "smoke and probes"
timeout 60 $py - <<'EOF' || exit 1
import os, statistics, time
import jax, jax.numpy as jnp, numpy as np, onnx_jax
d = np.load(".gpu/shared-models/mnist-8/io.npz")
feeds = {k[6:]: d[k] for k in d.files if k.startswith("input:")}
expected = [d[k] for k in d.files if k.startswith("output:")]
rep = onnx_jax.prepare(".gpu/shared-models/mnist-8/model.onnx", os.environ["DEVICE"])
got = rep.run(feeds)
print("mnist-8 on", rep.device, "max|diff| vs onnxruntime's recorded output:", float(np.abs(got[0] - expected[0]).max()))
fn, params = onnx_jax.to_jax(".gpu/shared-models/mnist-8/model.onnx")
x = next(iter(feeds.values()))
grad = jax.jit(jax.grad(lambda p: fn(p, x)[0].sum()))(params)
leaves = jax.tree_util.tree_leaves(grad)
print("to_jax gradient on", leaves[0].devices(), "finite:", all(bool(jnp.isfinite(g).all()) for g in leaves))

device = rep.device
rng = np.random.default_rng(0)
a, b = (rng.standard_normal(1 << 20).astype(np.float32) for _ in range(2))
quotient = np.asarray(jax.jit(jnp.divide)(jax.device_put(a, device), jax.device_put(b, device)))
print("float32 a / b: elements differing from numpy's IEEE quotient:", int((quotient != a / b).sum()), "of", a.size)
c = np.float32(5.0)
tie = jax.jit(lambda x, c: x / (c / 255))(jax.device_put(np.float32(-2.5), device), jax.device_put(c, device))
print("-2.5 / (5 / 255):", float(tie), "numpy float32:", float(np.float32(-2.5) / (c / np.float32(255))))
host = rng.standard_normal((8, 128, 8192)).astype(np.float32)  # GPT-2's logits at batch 8: 33.5 MB
for name, copy in [("host->device", lambda i: jax.device_put(host, device).block_until_ready()),
                   ("device->host", lambda i: np.asarray(on_device + i))]:
    on_device = jax.device_put(host, device)
    add = jax.jit(lambda v, i: v + i)
    seconds = []
    for i in range(8):
        fresh = add(on_device, float(i)).block_until_ready() if name == "device->host" else None
        start = time.perf_counter()
        copy(i) if fresh is None else np.asarray(fresh)
        seconds.append(time.perf_counter() - start)
    print(f"{name} copy of 33.5 MB: median {statistics.median(seconds[2:]) * 1e3:.2f} ms")
EOF

if [ -n "$MODELS" ]; then
stage "benchmark, float32 (precision highest)"
timeout ${BENCH_SECONDS:-250} $py examples/benchmark.py --device "$dev" --runs 12 --models-dir "$models" \
  --shared-models .gpu/shared-models --json "$out/bench-highest.json" --models $MODELS 2>&1 | tee "$out/bench-highest.log"
fi

if [ -n "$DEFAULT_MODELS" ]; then
stage "benchmark, JAX's default precision (reduced-precision matmul passes)"
timeout ${DEFAULT_SECONDS:-100} $py examples/benchmark.py --device "$dev" --precision default --runs 12 \
  --models-dir "$models" --shared-models .gpu/shared-models --json "$out/bench-default.json" --models $DEFAULT_MODELS \
  2>&1 | tee "$out/bench-default.log"
fi

if [ -n "$CONFORMANCE" ]; then
stage "official backend tests, -k '$CONFORMANCE'"
timeout 130 $py -m pytest conformance -k "$CONFORMANCE" -n 12 -q -rf > "$out/conformance.log" 2>&1
grep -E "^FAILED|passed|failed" "$out/conformance.log" | tail -40
fi
stage "done"

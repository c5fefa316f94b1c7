"""Benchmark suite: onnx_jax against onnxruntime on the same inputs, side by side, in one run.

Usage: python examples/benchmark.py [--runs N] [--batch 1 8] [--models NAME ...] [--models-dir DIR] [--json FILE]
                                    [--device CPU|CUDA] [--precision P] [--shared-models DIR] [--cores N]
(needs '.[test]': torch, transformers, onnxruntime, scikit-learn). Run it by hand on a quiet machine.
onnxruntime always runs on its CPU provider; `--device CUDA` puts onnx_jax on the first GPU (with `--precision`,
default full float32), so a GPU run compares onnx_jax there against onnxruntime on that machine's CPU cores.
`--cores N` runs both runtimes on the first N cores only (XLA sizes its thread pool by the process's CPU affinity;
onnxruntime gets N intra-op threads): `--cores 1` compares the kernels without the cost of threading.

Each runtime is timed in blocks of calls, not call by call in turn: onnxruntime's worker threads spin for a
while after each run and would take the cores from whatever runs next (this made onnx_jax look 20-30% slower);
each block starts after 0.2 s of untimed calls of its runtime. A sample of a sub-millisecond model is the mean
of as many calls as take about a millisecond.

Models: a one-node Add (per-call overhead, not in the means), every model in ../shared/models (their io.npz inputs,
tiled along a symbolic batch axis for batch 8), the transformers graphs of examples/export_models.py at the `bench`
size with both torch exporters (exported once into --models-dir), and a 100-tree random forest at batch 10,000. Each
model runs in its own process, so the peak RSS is that model's (both runtimes together). Per model and batch:
prepare + first call (compile) time, median and p90 latency over --runs samples, throughput, onnx_jax/onnxruntime
latency ratio, and onnx_jax's minor page faults per call (XLA's fresh temporaries; see docs/faq.md on large
batches); then the geometric mean of the ratios per batch size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared" / "models"  # the default of --shared-models
FOREST = "forest-100-trees"
ROUNDS = 4  # blocks per runtime; a VM's speed drifts by 20-30% over seconds
ONE_NODE = "one-node-add"  # per-call overhead: a single Add on 2x3 floats


def shared_names(shared: Path) -> list[str]:
    """Every model in the shared folder: a subfolder with model.onnx and the recorded io.npz."""
    return sorted(d.name for d in shared.iterdir() if (d / "model.onnx").exists() and (d / "io.npz").exists())


def exported_names() -> list[str]:
    sys.path.insert(0, str(HERE))
    from export_models import EXPORTERS, MODELS

    return [f"{m}-{e}" for m in MODELS for e in EXPORTERS]


def model_and_inputs(name: str, batch: int, models_dir: Path,
                     shared: Path = SHARED) -> tuple[Path, dict[str, np.ndarray]] | None:
    """The model file and its inputs at `batch`, or None where the model has no batch axis of that size."""
    if (shared / name / "model.onnx").exists():
        return _shared(shared / name, batch)
    if name == FOREST:
        return _forest(models_dir, batch)
    if name == ONE_NODE:
        return _one_node(models_dir, batch)
    sys.path.insert(0, str(HERE))
    from export_models import example_inputs, export

    model, exporter = name.rsplit("-", 1)
    path = models_dir / f"{name}.onnx"
    if not path.exists():
        models_dir.mkdir(parents=True, exist_ok=True)
        export(model, path, exporter=exporter, size="bench")
    return path, example_inputs(model, "bench", batch)


def _shared(folder: Path, batch: int) -> tuple[Path, dict[str, np.ndarray]] | None:
    import onnx

    path = folder / "model.onnx"
    recorded = np.load(folder / "io.npz")
    inputs = {k[len("input:"):]: recorded[k] for k in recorded.files if k.startswith("input:")}
    if batch == 1:
        return path, inputs
    declared = {i.name: i.type.tensor_type.shape.dim for i in onnx.load(path, load_external_data=False).graph.input}
    if not all(declared.get(n) and declared[n][0].dim_param for n in inputs):
        return None  # no symbolic batch axis on every input
    return path, {n: np.concatenate([x] * batch) for n, x in inputs.items()}


def _forest(models_dir: Path, batch: int) -> tuple[Path, dict[str, np.ndarray]] | None:
    if batch != 1:
        return None  # one size: 10,000 rows
    path = models_dir / f"{FOREST}.onnx"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10_000, 20)).astype(np.float32)
    if not path.exists():
        from skl2onnx import to_onnx
        from sklearn.ensemble import RandomForestRegressor

        y = x[:, 0] * 2 + np.sin(x[:, 1]) + rng.standard_normal(len(x)) * 0.1
        forest = RandomForestRegressor(n_estimators=100, max_depth=8, random_state=0).fit(x, y)
        models_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_onnx(forest, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString())
    return path, {"X": x}


def _one_node(models_dir: Path, batch: int) -> tuple[Path, dict[str, np.ndarray]] | None:
    import onnx
    from onnx import helper

    if batch != 1:
        return None
    path = models_dir / f"{ONE_NODE}.onnx"
    if not path.exists():
        inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2, 3]) for n in "ab"]
        graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add", inputs,
                                  [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [2, 3])])
        models_dir.mkdir(parents=True, exist_ok=True)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    x = np.ones((2, 3), np.float32)
    return path, {"a": x, "b": x}


def bench_one(name: str, args: argparse.Namespace) -> dict:
    """Time one model in this process: both runtimes, every batch size, in blocks per runtime."""
    import onnxruntime as ort

    import onnx_jax

    batches, runs = args.batch, args.runs
    results = []
    rep = session = None
    for batch in batches:
        found = model_and_inputs(name, batch, args.models_dir, args.shared_models)
        if found is None:
            continue
        path, inputs = found
        if rep is None:
            start = time.perf_counter()
            rep = onnx_jax.prepare(path, args.device, precision=args.precision)
            prepare_s = time.perf_counter() - start
            start = time.perf_counter()
            options = ort.SessionOptions()
            if args.cores:
                options.intra_op_num_threads = args.cores
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            session_s = time.perf_counter() - start
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        start = time.perf_counter()
        ours = rep.run(feeds)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = session.run(None, feeds)
        ort_first_s = time.perf_counter() - start
        diff = max((float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(ours, theirs)
                    if getattr(a, "dtype", None) is not None and a.dtype.kind == "f" and a.size), default=0.0)
        times: dict[str, list[float]] = {"onnx_jax": [], "onnxruntime": []}
        faults = {"onnx_jax": 0, "onnxruntime": 0}  # minor page faults during the timed calls
        calls = {"onnx_jax": lambda: rep.run(feeds), "onnxruntime": lambda: session.run(None, feeds)}
        repeat = {key: _calls_per_sample(call) for key, call in calls.items()}
        for _ in range(ROUNDS):  # blocks alternate, so the machine's slow drifts hit both runtimes
            for key, call in calls.items():
                _warm_up(call)
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                for _ in range(max(1, runs // ROUNDS)):
                    start = time.perf_counter()
                    for _ in range(repeat[key]):
                        call()
                    times[key].append((time.perf_counter() - start) / repeat[key])
                faults[key] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        items = len(next(iter(feeds.values())))
        entry = {"batch": batch, "items": items, "max_abs_diff": diff}
        for key, first in (("onnx_jax", prepare_s + first_s if batch == batches[0] else first_s),
                           ("onnxruntime", session_s + ort_first_s if batch == batches[0] else ort_first_s)):
            median = statistics.median(times[key])
            entry[key] = {"first_s": first, "median_ms": median * 1e3,
                          "p90_ms": float(np.percentile(times[key], 90)) * 1e3, "items_per_s": items / median,
                          "page_faults_per_call": faults[key] / (len(times[key]) * repeat[key])}
        entry["ratio"] = entry["onnx_jax"]["median_ms"] / entry["onnxruntime"]["median_ms"]
        results.append(entry)
    return {"model": name, "results": results, "precision": args.precision,
            "device": rep and f"{rep.device.device_kind} ({rep.device.platform})",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _warm_up(call: Callable[[], object], seconds: float = 0.2) -> None:
    """Calls for about `seconds` before a block: the other runtime's spinning workers settle, and the cores
    leave the slow state an idle VM drops into (a 0.5 s sleep made the next ~600 calls of a 30 us model 3x
    slower)."""
    end = time.perf_counter() + seconds
    call()
    while time.perf_counter() < end:
        call()


def _calls_per_sample(call: Callable[[], object]) -> int:
    """Warm up, then how many calls one timed sample makes: enough for about a millisecond, so timer
    resolution and scheduler jitter do not decide sub-millisecond models."""
    for _ in range(2):
        call()
    start = time.perf_counter()
    call()
    return max(1, min(200, math.ceil(1e-3 / (time.perf_counter() - start))))


def run_isolated(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--one", name, "--runs", str(args.runs), "--models-dir", str(args.models_dir),
               "--shared-models", str(args.shared_models), "--device", args.device, "--precision", args.precision,
               "--batch", *map(str, args.batch), *(["--cores", str(args.cores)] if args.cores else [])]
    env = {**os.environ, "ONNX_JAX_CACHE_DIR": ""}  # prepare + first call is a cold compile, not a cache load
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        return {"model": name, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--models", nargs="*", help="names to run (default: all)")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "onnx_jax" / "bench-models",
                        help="where exported models are kept between runs")
    parser.add_argument("--shared-models", type=Path, default=SHARED, help="the ../shared/models folder")
    parser.add_argument("--device", default="CPU", help="onnx_jax's device: CPU, CUDA or CUDA:N (onnxruntime: CPU)")
    parser.add_argument("--precision", default="highest", help="onnx_jax's matmul precision on GPU (see prepare)")
    parser.add_argument("--cores", type=int, help="run both runtimes on this many cores (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker process: one model, JSON on stdout
    args = parser.parse_args()
    if args.one:
        if args.cores:  # before JAX or onnxruntime start their thread pools
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
        print(json.dumps(bench_one(args.one, args)))
        return 0
    names = [ONE_NODE, *shared_names(args.shared_models), *exported_names(), FOREST]
    if args.models:
        names = [n for n in names if n in args.models]
    cores = f", {args.cores} core(s)" if args.cores else ""
    print(f"onnx_jax on {args.device} (precision {args.precision}); onnxruntime on its CPU provider{cores}", flush=True)
    print(f"{'model':28s} {'batch':>5s} {'first s':>7s} {'ort 1st':>7s} {'onnx_jax ms':>11s} {'p90':>8s} "
          f"{'ort ms':>8s} {'p90':>8s} {'ratio':>6s} {'items/s':>9s} {'RSS MB':>7s} {'max|diff|':>9s} "
          f"{'faults/call':>11s}", flush=True)
    everything = []
    for name in names:
        result = run_isolated(name, args)
        everything.append(result)
        if "error" in result:
            print(f"{name:28s} error: {result['error']}", flush=True)
            continue
        for e in result["results"]:
            ours, theirs = e["onnx_jax"], e["onnxruntime"]
            print(f"{name:28s} {e['batch']:5d} {ours['first_s']:7.2f} {theirs['first_s']:7.2f} "
                  f"{ours['median_ms']:11.3f} {ours['p90_ms']:8.3f} {theirs['median_ms']:8.3f} {theirs['p90_ms']:8.3f} "
                  f"{e['ratio']:6.2f} {ours['items_per_s']:9.1f} {result['peak_rss_mb']:7.0f} {e['max_abs_diff']:9.2g} "
                  f"{ours['page_faults_per_call']:11.0f}", flush=True)
    for r in everything:
        if r["model"] == ONE_NODE and r.get("results"):
            e = r["results"][0]
            overhead = (e["onnx_jax"]["median_ms"] - e["onnxruntime"]["median_ms"]) * 1e3
            print(f"per-call overhead, one Add node: onnx_jax {e['onnx_jax']['median_ms'] * 1e3:.1f} us, onnxruntime "
                  f"{e['onnxruntime']['median_ms'] * 1e3:.1f} us: {overhead:+.1f} us")
    for batch in args.batch:
        ratios = [e["ratio"] for r in everything for e in r.get("results", ())
                  if e["batch"] == batch and r["model"] != ONE_NODE]
        if ratios:
            print(f"batch {batch}: geometric mean onnx_jax/onnxruntime = {geomean(ratios):.2f} over {len(ratios)} "
                  f"models, worst {max(ratios):.2f}")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

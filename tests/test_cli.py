"""The onnx-jax command line: every subcommand through the installed console script, on real models.

Each subprocess pays JAX's start-up, so there is one per subcommand behaviour; the pieces that need
no process of their own (input parsing, text rendering, the operator table) are checked in-process.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_jax import REGISTRY, cli
from onnx_jax.graph import ValueInfo, build_graph, load_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared" / "models"
SCRIPT = Path(sys.executable).with_name("onnx-jax")

needs_models = pytest.mark.skipif(not MODELS.is_dir(), reason="../shared/models is not beside the checkout")


def onnx_jax(*args, expect=0):
    """Run the console script; check its exit code; parse stdout as JSON when --json was given."""
    assert SCRIPT.exists(), f"{SCRIPT} is missing: reinstall the project with `pip install -e .`"
    done = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, f"exit {done.returncode}, wanted {expect}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout) if "--json" in args else done


def model(name):
    return MODELS / name / "model.onnx"


def io(name):
    data = np.load(MODELS / name / "io.npz")
    return ({k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")},
            {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("output:")})


def require_supported(path):
    """Skip when an op the model needs has not landed yet (ops are written concurrently)."""
    proto, base_dir = load_model(str(path))
    report = cli.check_model(build_graph(proto, base_dir))
    missing = [f"{o['domain']}::{o['op_type']}" for o in report["ops"] if o["status"] == "unsupported"]
    if missing:
        pytest.skip(f"{path.parent.name} needs ops that are not implemented yet: {missing}")


def assert_close(got, want, rtol=1e-4):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def made_up_ops_model(path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("FrobnicateX", ["a"], ["b"]),
        helper.make_node("Blur", ["b"], ["c"], domain="com.example"),
        helper.make_node("FrobnicateX", ["c"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(proto, path)
    return path


# --- through the console script -----------------------------------------------------------------




def test_error_is_one_line_and_exit_code_2(tmp_path):
    done = onnx_jax("run", tmp_path / "missing.onnx", expect=2)
    assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr
    assert done.stdout == ""


@needs_models
def test_run_reproduces_recorded_outputs_and_writes_npz(tmp_path):
    require_supported(model("mnist-8"))
    out = tmp_path / "out.npz"
    result = onnx_jax("run", model("mnist-8"), "--input", MODELS / "mnist-8" / "io.npz", "--out", out, "--json")
    _, expected = io("mnist-8")
    (name, want), = expected.items()
    (summary,) = result["outputs"]
    assert summary["name"] == name and summary["shape"] == [1, 10] and summary["dtype"] == "float32"
    assert summary["min"] == pytest.approx(float(want.min()), abs=1e-3)
    assert result["inputs"][0]["source"].endswith("io.npz")
    assert_close(np.load(out)[name], want)


@needs_models
def test_check_reports_a_supported_model():
    require_supported(model("super-resolution-10"))
    result = onnx_jax("check", model("super-resolution-10"), "--json")
    assert result["supported"] and result["segments"] == 1
    assert result["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch_size", 1, 224, 224],
                                 "kind": "tensor"}]
    assert {o["op_type"] for o in result["ops"]} >= {"Conv", "Reshape", "Transpose"}
    assert sum(o["count"] for o in result["ops"]) == result["nodes"]


def test_check_names_every_unknown_op(tmp_path):
    result = onnx_jax("check", made_up_ops_model(tmp_path / "m.onnx"), "--json", expect=1)
    unsupported = {(o["domain"], o["op_type"]): o for o in result["ops"] if o["status"] == "unsupported"}
    assert set(unsupported) == {("ai.onnx", "FrobnicateX"), ("com.example", "Blur")}
    assert unsupported[("ai.onnx", "FrobnicateX")]["count"] == 2
    assert all("no ONNX schema" in o["reason"] for o in unsupported.values())
    assert not result["supported"]


@needs_models
def test_compare_matches_onnxruntime_at_another_batch_size():
    require_supported(model("image-classifier32"))
    result = onnx_jax("compare", model("image-classifier32"), "--batch", "2", "--json")
    assert result["match"]
    (output,) = result["outputs"]
    assert output["shape"] == [2, 10] and output["max_abs_err"] <= output["tolerance"]


@needs_models
def test_compare_names_the_corrupted_node(tmp_path):
    """An edited copy (one Add turned into Sub) against the original: the edited node is the first to diverge."""
    require_supported(model("mnist-8"))
    original = onnx.load(model("mnist-8"))
    edited = onnx.ModelProto()
    edited.CopyFrom(original)
    (node,) = [n for n in edited.graph.node if n.name == "Plus112"]
    node.op_type = "Sub"
    onnx.save(edited, tmp_path / "edited.onnx")
    result = onnx_jax("compare", tmp_path / "edited.onnx", "--reference", model("mnist-8"), "--json", expect=1)
    assert not result["match"]
    found = result["first_divergence"]
    assert (found["node"], found["op_type"], found["output"]) == ("Plus112", "Sub", "Plus112_Output_0")
    assert all(i["match"] for i in found["inputs"])


@needs_models
def test_bench_times_both_runtimes():
    require_supported(model("mnist-8"))
    result = onnx_jax("bench", model("mnist-8"), "--runs", "3", "--json")
    (entry,) = result["results"]
    for runtime in ("onnx_jax", "onnxruntime"):
        timing = entry[runtime]
        assert 0 < timing["median_ms"] <= timing["p90_ms"] and timing["throughput"] > 0
    assert entry["ratio"] == pytest.approx(entry["onnx_jax"]["median_ms"] / entry["onnxruntime"]["median_ms"])
    if sys.platform != "win32":
        assert all(entry[runtime]["page_faults_per_run"] >= 0 for runtime in ("onnx_jax", "onnxruntime"))


def _bench_result(faults):
    timing = {"first_call_s": 0.5, "median_ms": 2.0, "p90_ms": 2.5, "throughput": 500.0,
              "page_faults_per_run": faults}
    return {"model": "m.onnx", "device": "cpu", "runs": 5, "results": [{"batch": 8, "onnx_jax": timing}]}


def test_bench_suggests_huge_pages_only_when_runs_page_fault(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert "faults/run" in cli._render_bench(_bench_result(12.0))
    assert "hugetlb" not in cli._render_bench(_bench_result(12.0))
    assert "page-faulted 11929 times per run" in cli._render_bench(_bench_result(11929.0))
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in cli._render_bench(_bench_result(11929.0))
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert "hugetlb" not in cli._render_bench(_bench_result(11929.0))
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(sys, "platform", "darwin")  # no glibc
    assert "hugetlb" not in cli._render_bench(_bench_result(11929.0))


@needs_models
def test_export_symbolic_serves_every_batch_size(tmp_path):
    import jax

    require_supported(model("super-resolution-10"))
    path = tmp_path / "model.jax"
    result = onnx_jax("export", model("super-resolution-10"), "-o", path, "--symbolic", "--json")
    assert result["inputs"] == [{"name": "input", "shape": ["batch_size", 1, 224, 224], "dtype": "float32"}]
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    inputs, expected = io("super-resolution-10")
    (got,) = exported.call(inputs["input"])
    assert_close(np.asarray(got), expected["output"])
    (twice,) = exported.call(np.concatenate([inputs["input"]] * 2))
    assert twice.shape == (2, 1, 672, 672)


def test_ops_lists_the_registry():
    done = subprocess.run([sys.executable, "-m", "onnx_jax", "--json", "ops", "--no-tests"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    listed = {(o["domain"], o["op_type"]): o["since"] for o in table["ops"]}
    registered = {(o.domain or "ai.onnx", o.op_type) for o in REGISTRY}
    assert set(listed) == registered
    assert listed[("ai.onnx", "Add")] == list(REGISTRY.versions("", "Add"))
    assert not {(o["domain"], o["op_type"]) for o in table["not_registered"]} & registered


# --- in-process: inputs, rendering, the operator table ------------------------------------------


def test_help_lists_subcommands_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "check", "compare", "bench", "export", "ops", "examples:"):
        assert word in out


def test_inputs_are_seeded_typed_and_shaped(tmp_path):
    infos = [ValueInfo("x", np.dtype(np.float32), ("N", 3, "T")), ValueInfo("ids", np.dtype(np.int64), (None,)),
             ValueInfo("m", np.dtype(np.bool_), (2,)), ValueInfo("z", np.dtype(np.float16), (1,))]
    ui = cli.Ui(quiet=True)
    a, sources = cli.make_inputs(infos, ["z=zeros"], batch=4, dims={"T": 7}, seed=3, ui=ui)
    b, _ = cli.make_inputs(infos, ["z=zeros"], batch=4, dims={"T": 7}, seed=3, ui=ui)
    assert {n: (v.shape, v.dtype) for n, v in a.items()} == {
        "x": ((4, 3, 7), np.float32), "ids": ((4,), np.int64), "m": ((2,), np.bool_), "z": ((1,), np.float16)}
    assert all(np.array_equal(a[n], b[n]) for n in a) and not a["z"].any()
    assert sources == {"z": "zeros", "x": "random", "ids": "random", "m": "random"}
    np.save(tmp_path / "x.npy", np.ones((2, 3, 5)))  # float64 data for a float32 input: converted
    c, _ = cli.make_inputs(infos[:1], [f"x={tmp_path / 'x.npy'}"], batch=1, dims={}, seed=0, ui=ui)
    assert c["x"].dtype == np.float32 and c["x"].shape == (2, 3, 5)
    with pytest.raises(cli.CliError, match="no input 'y'"):
        cli.make_inputs(infos, ["y=zeros"], batch=1, dims={}, seed=0, ui=ui)
    with pytest.raises(cli.CliError, match="dtype int64"):
        np.save(tmp_path / "f.npy", np.ones(4, np.float32))
        cli.make_inputs(infos[1:2], [f"ids={tmp_path / 'f.npy'}"], batch=1, dims={}, seed=0, ui=ui)


def test_check_text_names_the_unsupported_ops(tmp_path, capsys):
    assert cli.main(["check", str(made_up_ops_model(tmp_path / "m.onnx"))]) == 1
    text = capsys.readouterr().out
    assert "NOT SUPPORTED" in text and "ai.onnx::FrobnicateX-17" in text and "com.example::Blur-1" in text


@needs_models
def test_compare_locates_a_wrong_implementation(monkeypatch, capsys):
    """onnx_jax itself diverging (Add computing a - b): the first Add node is named, in text and exit code."""
    require_supported(model("mnist-8"))

    class WrongAdd:
        def resolve(self, domain, op_type, opset):
            opdef = REGISTRY.resolve(domain, op_type, opset)
            return dataclasses.replace(opdef, fn=lambda a, b: a - b) if op_type == "Add" else opdef

    monkeypatch.setattr(cli, "REGISTRY", WrongAdd())
    assert cli.main(["--quiet", "compare", str(model("mnist-8"))]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH" in text and "first diverging node: 'Plus30' (Add)" in text


@needs_models
def test_export_concrete_shapes(tmp_path, capsys):
    import jax

    require_supported(model("image-classifier32"))
    path = tmp_path / "model.jax"
    assert cli.main(["--json", "export", str(model("image-classifier32")), "-o", str(path), "--batch", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == [{"name": "modelOutput", "shape": [3, 10],
                                                                "dtype": "float32"}]
    inputs, expected = io("image-classifier32")
    (got,) = jax.export.deserialize(bytearray(path.read_bytes())).call(np.concatenate([inputs["modelInput"]] * 3))
    assert_close(np.asarray(got)[2:], expected["modelOutput"])


def test_difference_is_relative_to_magnitude():
    ref = np.array([1000.0, 0.0, -1.0], np.float32)
    assert cli.difference(ref + np.float32(0.05), ref, rtol=1e-4, atol=1e-4).ok
    assert not cli.difference(ref + np.float32(0.5), ref, rtol=1e-4, atol=1e-4).ok
    assert cli.difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 0, 0).ok
    assert cli.difference(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), 1, 1).reason
    assert "shape" in cli.difference(np.zeros(2), np.zeros(3), 1, 1).reason


def test_operator_table_counts_official_tests(tmp_path):
    tests = {"test_add": ["", "Add"], "test_add_bcast": ["", "Add"], "test_frob": ["", "NegativeLogLikelihoodLoss"]}
    expectations = tmp_path / "expected_failures.txt"
    expectations.write_text("# header\ntest_add_bcast_cpu some reason\ntest_add_cuda a GPU's own failure\n")
    table = cli.operator_table(REGISTRY, tests, cli.read_expected_failures(expectations))
    add = next(o for o in table["ops"] if o["op_type"] == "Add")
    assert (add["tests"], add["passing"], add["failing"]) == (2, 1, 1)
    markdown = cli._render_ops_markdown(table)
    assert markdown.startswith("# Operators") and "| Add | " in markdown and "| official tests | passing |" in markdown
    assert cli.read_expected_failures(tmp_path / "absent.txt") is None


def test_docs_operator_table_is_generated_from_the_registry():
    """docs/operators.md must be exactly what `onnx-jax ops --markdown` prints (regenerate it when ops change)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "onnx_jax", "ops", "--markdown"], capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (root / "docs" / "operators.md").read_text()


def test_check_counts_per_node_host_ops_only_where_they_run_on_the_host(tmp_path, capsys):
    """LabelEncoder is a host op only with string keys or values: an int -> int one is no graph break."""
    def label_encoder(keys: dict) -> Path:
        node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", **keys)
        x_type = onnx.TensorProto.STRING if "keys_strings" in keys else onnx.TensorProto.INT64
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, [3])],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [3])])
        path = tmp_path / f"encoder{len(list(tmp_path.iterdir()))}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                          helper.make_opsetid("ai.onnx.ml", 2)]), path)
        return path

    for keys, segments in (({"keys_int64s": [1, 2], "values_int64s": [5, 6]}, 1),
                           ({"keys_strings": ["a", "b"], "values_int64s": [5, 6]}, 2)):
        assert cli.main(["--json", "check", str(label_encoder(keys))]) == 0
        assert json.loads(capsys.readouterr().out)["segments"] == segments

"""Smoke test of benchmarks/accelerator.py: its FID, prdc, Sinkhorn and exact-W sections at tiny sizes on the CPU give
rows with the fields the table and the JSON need, and ours and the reference agree where both compute a value. No
timings are checked (timings live in benchmarks/, never in asserts)."""

from __future__ import annotations

import pathlib
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("ot")
pytest.importorskip("pytorch_fid")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import accelerator

TINY = dict(
    accelerator.SIZES["quick"],
    repeats=1,
    fid_n=120,
    fid_d=16,
    prdc_n=150,
    prdc_d=4,
    sinkhorn_n=(60,),
    exact_n=(40,),
)
FIELDS = ("section", "case", "ours", "reference", "status", "ours_median_ms", "ours_compile_s")
TIMED = ("reference_median_ms", "reference_first_call_s", "ratio", "difference")


@pytest.mark.timeout(120)
def test_value_sections_agree_with_their_references():
    rows = []
    for bench in (accelerator.bench_fid, accelerator.bench_prdc, accelerator.bench_sinkhorn, accelerator.bench_exact):
        rows += bench(TINY, "cpu")
    assert [r["section"] for r in rows] == ["fid", "prdc", "sinkhorn", "sinkhorn", "exact"]
    for r in rows:
        assert r["status"] == "ok", r.get("reason")
        for field in FIELDS + TIMED:
            assert field in r, (r["case"], field)
        assert r["ours_median_ms"] > 0 and r["reference_median_ms"] > 0 and r["ratio"] > 0
    fid, prdc, sink2, sink64, exact = rows
    assert fid["difference"] < 1e-8  # relative, float64 on both sides
    assert prdc["difference"] < 1e-6
    assert exact["difference"] < 1e-5
    for r in (sink2, sink64):  # stopping rules differ (ott-jax's marginal error vs POT's), the values hardly
        assert r["converged"] and abs(r["ours_value"] - r["reference_value"]) < 2e-2 * r["reference_value"]
    table = accelerator.markdown(rows).splitlines()
    assert len(table) == 2 + len(rows) and all(line.count("|") == 10 for line in table)


def test_train_rows_record_unsupported_and_failed_references():
    torch_reference = pytest.importorskip("torch_reference")
    ours = {"compile_s": 1.0, "median_ms": 2.0, "min_ms": 2.0}
    torch_times = {
        ("float32", "eager"): {"median_ms": 4.0, "min_ms": 4.0, "compile_s": 0.1},
        ("float32", "compile"): torch_reference.CompileUnsupported("no double backward"),
        ("bfloat16", "eager"): RuntimeError("autocast broke"),
        ("bfloat16", "compile"): {"median_ms": 1.0, "min_ms": 1.0, "compile_s": 9.0},
    }
    rows = accelerator._train_rows(
        "case", {"float32": ours, "bfloat16": ValueError("bad")}, torch_times, "cpu", True, {"objective": "x"}
    )
    assert [(r["precision"], r["status"]) for r in rows] == [
        ("float32", "ok"),
        ("float32", "unsupported"),
        ("bfloat16", "failed"),
        ("bfloat16", "failed"),
    ]
    assert rows[0]["ratio"] == 2.0 and "double backward" in rows[1]["reason"] and "bad" in rows[2]["reason"]
    # without autocast the bfloat16 rows are compared with PyTorch float32
    rows = accelerator._train_rows(
        "case", {"bfloat16": ours}, {k: v for k, v in torch_times.items() if k[0] == "float32"}, "cpu", False, {}
    )
    assert all("float32" in r["reference"] for r in rows) and rows[0]["ratio"] == 2.0

"""Shared pytest fixtures: the reference fixtures folder and the devices to test on.

Fixtures are read from ../shared/fixtures beside the checkout (or NEUROFIT_FIXTURES). GPU
tests run on the first adapter with f64 (lavapipe in CI); without one they skip with a visible
reason, unless NEUROFIT_REQUIRE_GPU=1 makes that a failure. NEUROFIT_TEST_GPU picks the device
string (default 'gpu')."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import neurofit

ROOT = Path(__file__).resolve().parents[2]


def fixtures_root():
    p = Path(os.environ.get("NEUROFIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
    if not p.is_dir():
        pytest.fail(
            f"fixture folder {p} is missing: the tests need ../shared/fixtures beside the "
            "checkout (or set NEUROFIT_FIXTURES)",
            pytrace=False,
        )
    return p


def case_dir(model, case):
    d = fixtures_root() / model / case
    assert d.is_dir(), f"fixture case {d} is missing"
    return d


def load(model, case, name):
    return np.load(case_dir(model, case) / f"{name}.npy")


def load_opt(model, case, name):
    p = case_dir(model, case) / f"{name}.npy"
    return np.load(p) if p.exists() else None


def params(model, case):
    return json.loads((case_dir(model, case) / "params.json").read_text())


def cases(model):
    root = fixtures_root() / model
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def max_abs_diff(what, got, ref):
    """max |got - ref| over the entries that are not NaN in both; NaN must be where the
    reference has NaN and nowhere else."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs reference {ref.shape}"
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN where the reference has none (or vice versa)"
    if not ref.size or nan.all():
        return 0.0, 0.0
    return float(np.max(np.abs(got[~nan] - ref[~nan]))), float(np.max(np.abs(ref[~nan])))


def assert_close(what, got, ref, rel):
    """max|got - ref| <= rel * max|ref| (or <= rel), as the Rust tests check."""
    d, scale = max_abs_diff(what, got, ref)
    scale = max(scale, 1e-300)
    assert d <= rel * scale or d <= rel, (
        f"{what}: max |diff| = {d:e} exceeds {rel:e} x max|ref| ({scale:e})"
    )


def gpu_device():
    return os.environ.get("NEUROFIT_TEST_GPU", "gpu")


def gpu_reason(needs_f64=True):
    """None when a GPU adapter for the tests exists, else why not."""
    gpus = [d for d in neurofit.devices() if d["kind"] == "gpu"]
    if not gpus:
        return "no GPU adapter (install Mesa lavapipe: mesa-vulkan-drivers)"
    if needs_f64 and not any(d["shader_f64"] for d in gpus):
        return "no GPU adapter with SHADER_F64"
    return None


def require_gpu(needs_f64=True):
    why = gpu_reason(needs_f64)
    if why is None:
        return
    if os.environ.get("NEUROFIT_REQUIRE_GPU") == "1":
        pytest.fail(f"NEUROFIT_REQUIRE_GPU=1 but {why}", pytrace=False)
    pytest.skip(f"GPU test skipped: {why}")


@pytest.fixture(params=["cpu", "gpu"])
def device(request):
    """'cpu', then the test GPU (skipped or failed as require_gpu says)."""
    if request.param == "gpu":
        require_gpu(True)
        return gpu_device()
    return "cpu"

"""The Python API beyond the fixtures: inputs (zero copy, Fortran order, memory maps, dtypes),
pickle and setters, exception types, the GIL, Ctrl-C, NEUROFIT_DEVICE, progress output."""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import neurofit
import neurofit.fastl2lir
import neurofit.gsn
from neurofit import FastL2LiR


def data(n=120, f=300, u=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)) + 100.0
    W = rng.standard_normal((f, u)) * (rng.random((f, u)) < 0.05)
    Y = (X - 100.0) @ W + 0.5 * rng.standard_normal((n, u))
    return X, Y


def fitted(X, Y, **kw):
    kw.setdefault("alpha", 10.0)
    kw.setdefault("n_feat", 30)
    return FastL2LiR(device="cpu").fit(X, Y, **kw)


# ---------------------------------------------------------------- inputs


def peak_python_allocations(fn):
    """Peak bytes allocated through Python's allocators (numpy array data included) while
    `fn` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_float64_input_is_not_copied():
    X, Y = data(n=400, f=4000, u=20)
    assert X.nbytes == 12_800_000
    peak = peak_python_allocations(lambda: fitted(X, Y))
    # W (4000 x 20 f64 = 640 kB) and b are the only arrays the fit allocates in Python
    assert peak < X.nbytes / 4, f"a float64 fit allocated {peak} bytes in Python"
    # the measure sees copies: a float32 X is widened once
    X32 = X.astype(np.float32)
    peak32 = peak_python_allocations(lambda: fitted(X32, Y))
    assert peak32 >= X.nbytes, peak32


def test_fortran_order_and_views_give_the_same_model():
    X, Y = data()
    ref = fitted(X, Y)
    for Xv, Yv in [
        (np.asfortranarray(X), np.asfortranarray(Y)),
        (X[::-1][::-1], Y),
        (np.repeat(X, 2, axis=1)[:, ::2], Y),
    ]:
        m = fitted(Xv, Yv)
        np.testing.assert_allclose(m.W, ref.W, rtol=0, atol=1e-12 * np.abs(ref.W).max())
        np.testing.assert_allclose(m.b, ref.b, rtol=0, atol=1e-12 * np.abs(ref.b).max())


def test_memory_mapped_inputs(tmp_path):
    X, Y = data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    Ym = np.load(tmp_path / "Y.npy", mmap_mode="r")
    assert isinstance(Xm, np.memmap)
    m = fitted(Xm, Ym)
    ref = fitted(X, Y)
    assert np.array_equal(m.W, ref.W) and np.array_equal(m.b, ref.b)
    assert np.array_equal(m.predict(Xm), ref.predict(X))


def test_dtypes():
    X, Y = data()
    ref = fitted(X, Y)
    # integer and float16 inputs are converted; float32 inputs with a float64 fit too
    Xi = np.round(X * 10).astype(np.int64)
    mi = fitted(Xi, Y)
    mf = fitted(Xi.astype(np.float64), Y)
    assert np.array_equal(mi.W, mf.W)
    m16 = fitted(X.astype(np.float16), Y.astype(np.float16))
    assert m16.W.dtype == np.float64
    m32 = fitted(X, Y, dtype=np.float32)
    assert m32.W.dtype == np.float32 and m32.b.dtype == np.float32
    assert fitted(X, Y, dtype="float32").W.dtype == np.float32
    assert m32.predict(X).dtype == np.float64  # predict's default, as in the reference
    assert m32.predict(X, dtype=np.float32).dtype == np.float32
    np.testing.assert_allclose(m32.W, ref.W, atol=1e-3 * np.abs(ref.W).max())
    with pytest.raises(TypeError):
        fitted(X, Y, dtype=np.float16)
    with pytest.raises(TypeError):
        fitted(X, Y, dtype=np.int32)
    # lists are accepted (the reference needs arrays)
    ml = fitted(X.tolist(), Y.tolist())
    assert np.array_equal(ml.W, ref.W)


def test_nd_targets():
    X, Y = data(u=24)
    Y3 = Y.reshape(120, 4, 6, order="F")
    m = fitted(X, Y3)
    assert m.W.shape == (300, 4, 6) and m.b.shape == (1, 4, 6)
    flat = fitted(X, Y)
    assert np.array_equal(m.W.reshape(300, 24, order="F"), flat.W)
    assert m.predict(X).shape == (120, 4, 6)


# ---------------------------------------------------------------- model state


def test_pickle_round_trip():
    X, Y = data()
    m = fitted(X, Y)
    s = pickle.dumps(m, protocol=4)
    assert b"neurofit.fastl2lir" in s and b"FastL2LiR" in s
    m2 = pickle.loads(s)
    assert type(m2) is neurofit.fastl2lir.FastL2LiR
    assert np.array_equal(m2.predict(X), m.predict(X))
    assert m2.device == "cpu"


def test_setters_and_bdmodel_attributes():
    X, Y = data()
    m = fitted(X, Y)
    assert type(m).__name__ == "FastL2LiR"
    assert m._FastL2LiR__W is m.W and m._FastL2LiR__b is m.b
    m2 = FastL2LiR(device="cpu")
    m2.W = m.W
    m2.b = m.b
    assert np.array_equal(m2.predict(X), m.predict(X))
    m3 = FastL2LiR(m.W, m.b, device="cpu")
    assert np.array_equal(m3.predict(X), m.predict(X))
    # b may be given as (U,)
    m2.b = m.b.ravel()
    assert np.array_equal(m2.predict(X), m.predict(X))
    with pytest.raises(AttributeError):
        m.S
    m.S = np.ones(m.W.shape, dtype=bool)
    assert m.S.shape == m.W.shape


def test_per_unit_path_and_stale_selection_mask():
    X, Y = data()
    m = FastL2LiR(device="cpu").fit(
        X, Y, alpha=1.0, n_feat=10, save_select_feat=True, select_sample="remove_nan"
    )
    assert m.S.dtype == np.bool_ and m.S.sum(axis=0).tolist() == [10] * 40
    p = m.predict(X, save_select_feat=True)
    np.testing.assert_allclose(p, m.predict(X), atol=1e-9 * np.abs(p).max())
    # a main-path fit clears the selection mask of the earlier per-unit fit
    m.fit(X, Y, n_feat=10)
    with pytest.raises(AttributeError):
        m.S


# ---------------------------------------------------------------- errors


def test_fit_errors_have_the_reference_types():
    X, Y = data()
    with pytest.raises(IndexError):
        fitted(X, Y[:, 0])
    with pytest.raises(ValueError):
        fitted(X, Y[:, 0])
    with pytest.raises(ValueError):
        fitted(X[None], Y)
    with pytest.raises(ValueError):
        fitted(X[:-1], Y)
    with pytest.raises(TypeError):
        fitted(X, Y, n_feat=10.0)
    with pytest.raises(ValueError):
        fitted(X, Y, n_feat=-5)
    with pytest.raises(RuntimeError, match="Not implemented selection method"):
        fitted(X, Y, select_sample="nan_remove")
    with pytest.raises(RuntimeError, match="Not implemented spatial normalization method"):
        fitted(X, Y, spatial_norm="norm3", select_sample="remove_nan")
    Xn = X.copy()
    Xn[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted(Xn, Y)
    with pytest.raises(ValueError):
        fitted(X, Y, alpha=-1.0)
    # alpha = 0 with two identical selected columns: singular, numpy's LinAlgError
    Xd = np.hstack([X[:, :1], X[:, :1], X[:, 1:5]])
    with pytest.raises(np.linalg.LinAlgError):
        FastL2LiR(device="cpu").fit(Xd, Xd[:, :2] + 0.1 * Y[:, :2], alpha=0.0, n_feat=3)
    with pytest.warns(UserWarning, match="less features than n_feat"):
        fitted(X, Y, n_feat=1000)


def test_predict_errors():
    X, Y = data()
    with pytest.raises(ValueError):
        FastL2LiR(device="cpu").predict(X)
    m = fitted(X, Y)
    with pytest.raises(ValueError):
        m.predict(X[:, :10])
    with pytest.raises(ValueError):
        m.predict(X[0])
    with pytest.raises(AttributeError):
        m.predict(X, save_select_feat=True)


def test_predict_refuses_a_model_over_the_budget():
    X, Y = data()
    m = fitted(X, Y)
    small = FastL2LiR(m.W, m.b, device="cpu", max_memory="64KiB")
    with pytest.raises(neurofit.OutOfMemoryError):
        small.predict(X)
    assert np.array_equal(FastL2LiR(m.W, m.b, device="cpu").predict(X), m.predict(X))


def test_neurofit_error_kinds():
    X, Y = data()
    assert issubclass(neurofit.OutOfMemoryError, MemoryError)
    assert issubclass(neurofit.GpuError, RuntimeError)
    assert issubclass(neurofit.DeviceUnavailableError, RuntimeError)
    with pytest.raises(neurofit.OutOfMemoryError):
        FastL2LiR(device="cpu", max_memory="20KiB").fit(X, Y, n_feat=30)
    with pytest.raises(neurofit.DeviceUnavailableError):
        FastL2LiR(device="gpu:99").fit(X, Y, n_feat=30)
    with pytest.raises(ValueError):
        FastL2LiR(device="tpu").fit(X, Y, n_feat=30)


def gsn_data(n=12, c=30, t=4, seed=1):
    rng = np.random.default_rng(seed)
    sig = rng.standard_normal((n, c, 1))
    return sig + 0.8 * rng.standard_normal((n, c, t))


def test_gsn_errors_have_the_reference_types():
    d = gsn_data()
    with pytest.raises(ValueError, match="3D"):
        neurofit.perform_gsn(d[:, :, 0])
    with pytest.raises(ValueError, match="at least 2"):
        neurofit.perform_gsn(d[:, :, :1])
    for bad in ({"uneven": "slow"}, {"returns": ["cX"]}, {"backend": "jax"},
                {"backend": "numpy", "device": "cuda"},
                {"returns": "eigvals_signal", "eigh_device": "gpu"}):
        with pytest.raises(ValueError):
            neurofit.perform_gsn(d, bad)
    dn = d.copy()
    dn[:, 0, :] = np.nan  # condition 0 has no valid trial
    with pytest.raises(AssertionError):
        neurofit.perform_gsn(dn)
    x2 = d[:, :, 0].T.copy()
    x2[0, 0] = np.nan
    with pytest.raises(AssertionError):
        neurofit.calc_shrunken_covariance(x2)
    with pytest.raises(ValueError):
        neurofit.perform_gsn(d, {"shrinklevels": [0.5, 1.5]})


# ---------------------------------------------------------------- GSN options


def test_gsn_options_and_outputs():
    d = gsn_data()
    r = neurofit.perform_gsn(d, {"returns": "cSb", "wantverbose": 0, "some_other_key": 3})
    assert set(r) == {"mnN", "mnS", "ncsnr", "shrinklevelN", "shrinklevelD", "numiters", "cSb"}
    assert r["mnN"].shape == (1, 12) and r["ncsnr"].shape == (12,)
    assert isinstance(r["shrinklevelN"], float) and isinstance(r["numiters"], int)
    r1 = neurofit.perform_gsn(d, {"wantshrinkage": 0})
    assert r1["shrinklevelN"] == 1.0 and r1["shrinklevelD"] == 1.0
    r2 = neurofit.perform_gsn(d, {"shrinklevels": [0.25, 0.5]})
    assert r2["shrinklevelN"] in (0.25, 0.5)
    r32 = neurofit.perform_gsn(d.astype(np.float32), {"device": "cpu"})
    assert r32["cN"].dtype == np.float32 and r32["cNb"].dtype == np.float64
    rc = neurofit.gsn.perform_gsn(d, {"device": "cpu", "backend": "numpy"})
    assert np.array_equal(rc["cSb"], neurofit.perform_gsn(d, {"device": "cpu"})["cSb"])
    mn, c, level, nll = neurofit.calc_shrunken_covariance(d[:, :, 0].T)
    assert mn.shape == (12,) and c.shape == (12, 12) and nll.shape == (51,)
    mn3, *_ = neurofit.calc_shrunken_covariance(np.transpose(d, (2, 0, 1)))
    assert mn3.shape == (1, 12) and not mn3.any()


def test_devices():
    ds = neurofit.devices()
    assert ds[-1]["id"] == "cpu" and ds[-1]["threads"] >= 1
    for d in ds[:-1]:
        assert d["id"].startswith("gpu:") and isinstance(d["shader_f64"], bool)


# ---------------------------------------------------------------- threads and signals


def slow_problem():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((400, 3000))
    Y = rng.standard_normal((400, 3000))
    return X, Y


def test_fit_releases_the_gil():
    X, Y = slow_problem()
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.002)

    th = threading.Thread(target=count)
    t0 = time.monotonic()
    th.start()
    FastL2LiR(device="cpu").fit(X, Y, n_feat=200)
    t1 = time.monotonic()
    stop.set()
    th.join()
    during = [t for t in ticks if t0 + 0.05 < t < t1 - 0.05]
    # with the GIL held for the whole fit the thread could not tick at all
    assert t1 - t0 > 0.3, "the problem is too small to tell"
    assert len(during) >= 20, f"{len(during)} ticks during a {t1 - t0:.2f} s fit"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_fit():
    X, Y = slow_problem()
    Y = np.hstack([Y] * 6)
    m = FastL2LiR(device="cpu")
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            m.fit(X, Y, n_feat=200, chunk_size=500)
    finally:
        timer.cancel()
    assert m.W.size == 0, "an interrupted fit must not leave a partial model"
    assert fitted(*data()).W.shape == (300, 40)  # the next fit runs normally


# ---------------------------------------------------------------- environment and output


def run_python(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True)


def test_neurofit_device_environment_variable():
    code = (
        "import numpy as np, neurofit\n"
        "X = np.random.default_rng(0).standard_normal((50, 20)); Y = X[:, :3]\n"
        "m = neurofit.FastL2LiR().fit(X, Y, n_feat=5)\n"
        "print(neurofit.default_device(), '|', m.device_used)\n"
    )
    r = run_python(code, NEUROFIT_DEVICE="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cpu | cpu"), r.stdout
    r = run_python(code, NEUROFIT_DEVICE="quantum")
    assert r.returncode != 0 and "ValueError" in r.stderr and "NEUROFIT_DEVICE" in r.stderr


def test_verbose_shows_progress(capfd):
    X, Y = data()
    FastL2LiR(verbose=True, device="cpu").fit(X, Y, n_feat=30)
    err = capfd.readouterr().err
    assert "FastL2LiR fit" in err and "40" in err
    FastL2LiR(device="cpu").fit(X, Y, n_feat=30)
    assert capfd.readouterr().err == ""


def test_no_warnings_on_a_plain_fit():
    X, Y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted(X, Y).predict(X)

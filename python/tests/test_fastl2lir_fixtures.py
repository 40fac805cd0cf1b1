"""Every FastL2LiR fixture (outputs of fastl2lir 0.11) through the Python API, on the CPU and
the test GPU. Tolerances as in the Rust tests: f64 1e-9 x max|ref|, f32 1e-4 x max|ref|."""

import warnings

import numpy as np
import pytest

import neurofit
from conftest import assert_close, case_dir, cases, load, load_opt, params

M = "fastl2lir"


@pytest.mark.parametrize("case", cases(M))
def test_fixture(case, device):
    p = params(M, case)
    fk = dict(p["fit_kwargs"])
    pk = dict(p.get("predict_kwargs") or {})
    dtype = np.dtype(fk.pop("dtype", "float64"))
    tol = 1e-9 if dtype == np.float64 else 1e-4
    X = load(M, case, "X_train")
    Y = load(M, case, "Y_train")
    Xt = load(M, case, "X_test")
    model = neurofit.FastL2LiR(device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ret = model.fit(X, Y, dtype=dtype, **fk)
    assert ret is model
    # the reference's UserWarning exactly when n_feat exceeds the features
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert bool(said) == (fk.get("n_feat", 0) > X.shape[1]), said
    sfx = "_mergesort" if case == "ties" else ""
    W_ref = load(M, case, "W" + sfx)
    b_ref = load(M, case, "b" + sfx)
    assert model.W.dtype == dtype and model.b.dtype == dtype
    assert model.W.shape == W_ref.shape and model.b.shape == b_ref.shape
    assert_close(f"{case} W", model.W, W_ref, tol)
    assert_close(f"{case} b", model.b, b_ref, tol)
    pdt = np.dtype(pk.pop("dtype", "float64"))
    pred = model.predict(Xt, dtype=pdt, **pk)
    assert pred.dtype == pdt
    assert_close(f"{case} Y_pred", pred, load(M, case, "Y_pred" + sfx), tol)
    default = load_opt(M, case, "Y_pred_default_dtype")
    if default is not None:
        pred64 = model.predict(Xt, **pk)
        assert pred64.dtype == np.float64
        assert_close(f"{case} Y_pred (default dtype)", pred64, default, tol)
    if (case_dir(M, case) / "S.npy").exists():
        S = model.S
        assert S.dtype == np.bool_
        np.testing.assert_array_equal(S, load(M, case, "S"), err_msg=f"{case}: S differs")
    else:
        with pytest.raises(AttributeError):
            model.S

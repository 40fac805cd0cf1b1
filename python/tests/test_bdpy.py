"""bdpy end to end: ModelTraining / ModelTest with neurofit.FastL2LiR against the same pipeline
with fastl2lir 0.11, in both of bdpy's save formats. Needs `pip install bdpy fastl2lir
'numpy<2.4'`; skipped without them unless NEUROFIT_REQUIRE_PYDEPS=1 (CI) makes that a failure."""

import glob
import os

import numpy as np
import pytest

import neurofit


def need(module):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("NEUROFIT_REQUIRE_PYDEPS") == "1":
            pytest.fail(f"NEUROFIT_REQUIRE_PYDEPS=1 but {module} is not installed", pytrace=False)
        pytest.skip(f"{module} is not installed (pip install bdpy fastl2lir 'numpy<2.4')")


def problem(seed=3):
    rng = np.random.default_rng(seed)
    n, f = 150, 400
    X = rng.standard_normal((n, f)) + 50.0
    W = rng.standard_normal((f, 3, 25)) * (rng.random((f, 3, 25)) < 0.05)
    Y = np.einsum("nf,fcu->ncu", X - 50.0, W) + 0.3 * rng.standard_normal((n, 3, 25))
    Xt = rng.standard_normal((40, f)) + 50.0
    return X, Y, Xt


def pipeline(model_factory, save_format, tmp, X, Y, Xt):
    from bdpy.ml import ModelTest, ModelTraining

    path = os.path.join(tmp, save_format, "model")
    train = ModelTraining(model_factory(), X, Y)
    train.model_parameters = {"alpha": 10.0, "n_feat": 30}
    train.dtype = np.float64
    train.chunk_axis = 1
    train.save_format = save_format
    train.save_path = path
    train.verbose = 0
    train.run()
    if save_format == "bdmodel":
        test = ModelTest(model_factory(), Xt)
        test.model_format = "bdmodel"
        test.model_path = os.path.splitext(path)[0]
    else:
        test = ModelTest(None, Xt)
        test.model_format = "pickle"
        test.model_path = path
    test.dtype = np.float64
    test.chunk_axis = 1
    return test.run(), path


@pytest.mark.parametrize("save_format", ["bdmodel", "pickle"])
# fastl2lir 0.11's own numpy deprecation warnings (np.matrix; array-to-scalar, numpy 1.25)
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bdpy_pipeline_matches_fastl2lir(tmp_path, save_format):
    need("bdpy")
    fastl2lir = need("fastl2lir")
    X, Y, Xt = problem()
    ours, path_ours = pipeline(
        lambda: neurofit.FastL2LiR(device="cpu"), save_format, str(tmp_path / "ours"), X, Y, Xt
    )
    ref, path_ref = pipeline(fastl2lir.FastL2LiR, save_format, str(tmp_path / "ref"), X, Y, Xt)
    assert ours.shape == ref.shape == (40, 3, 25)
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-9 * scale
    if save_format == "bdmodel":
        from bdpy.dataform import load_array

        for key in ("W", "b"):
            mine = sorted(glob.glob(os.path.join(path_ours, key, "*.mat")))
            theirs = sorted(glob.glob(os.path.join(path_ref, key, "*.mat")))
            assert len(mine) == len(theirs) == 3
            for a, b in zip(mine, theirs):
                wa, wb = load_array(a, key=key), load_array(b, key=key)
                assert wa.shape == wb.shape
                assert np.abs(wa - wb).max() <= 1e-9 * np.abs(wb).max()
    else:
        import pickle

        files = sorted(glob.glob(os.path.join(path_ours, "*.pkl.gz")))
        assert len(files) == 3
        with open(files[0], "rb") as f:
            obj = pickle.load(f)
        assert type(obj["model"]) is neurofit.FastL2LiR

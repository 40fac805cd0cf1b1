"""FastL2LiR with the interface of the `fastl2lir` package (0.11): ridge regression in which
every output unit keeps its top-k input features by |correlation|, fitted by neurofit on a GPU
or the CPU.

`neurofit.fastl2lir.FastL2LiR` can replace `fastl2lir.FastL2LiR` in existing code, bdpy's
`ModelTraining` / `ModelTest` included (the `bdmodel` format reads `_FastL2LiR__W` and
`_FastL2LiR__b`, and the class is named `FastL2LiR`).
"""

import warnings

import numpy as np

from . import _neurofit
from ._common import (
    ProgressBar,
    as_f64,
    device_string,
    fit_dtype,
    memory_bytes,
    tqdm_disabled,
)

__all__ = ["FastL2LiR"]

_SPATIAL_NORMS = ("norm1", "norm2", "std1", "std1mean0", "norm1mean0", "norm2mean0")


class DimensionError(ValueError, IndexError):
    """An array has too few dimensions. It is a ValueError and, because the reference raises
    IndexError for a 1-D Y, an IndexError too."""


def _check_spatial_norm(spatial_norm):
    if spatial_norm is not None and spatial_norm not in _SPATIAL_NORMS:
        # the reference's exception type and arguments
        raise RuntimeError(("Not implemented spatial normalization method:", spatial_norm))


def _check_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


class FastL2LiR:
    """Fast L2-regularized linear regression with per-unit feature selection.

    Parameters
    ----------
    W, b : ndarray, optional
        Weights `(features, *unit_shape)` and biases `(1, *unit_shape)` of a fitted model
        (to predict without fitting).
    S : ndarray of bool, optional
        Selection mask `(features, *unit_shape)` (per-unit-path models).
    verbose : bool
        Show a progress bar while fitting.
    device : str, keyword only
        'auto', 'cpu', 'gpu', 'gpu:N' or 'gpu:NAME'. None (default): the environment variable
        NEUROFIT_DEVICE when set, else 'auto' (a GPU for large problems, else the CPU; a GPU
        failure falls back to the CPU with a warning).
    max_memory : int or str, keyword only
        Memory budget in bytes or as '2GiB'; None: from the platform. Larger problems are
        chunked to fit it or refused with neurofit.OutOfMemoryError.
    """

    def __init__(self, W=None, b=None, S=None, verbose=False, *, device=None, max_memory=None):
        self.__W = np.array([]) if W is None else W
        self.__b = np.array([]) if b is None else b
        if S is not None:
            self.__S = S
        self.__verbose = verbose
        self.device = device
        self.max_memory = max_memory

    def __repr__(self):
        shape = getattr(self.__W, "shape", None)
        return f"FastL2LiR(W shape={shape}, device={self.device!r})"

    @property
    def W(self):
        """Weights, `(features, *unit_shape)`."""
        return self.__W

    @W.setter
    def W(self, W):
        self.__W = W

    @property
    def b(self):
        """Biases, `(1, *unit_shape)`."""
        return self.__b

    @b.setter
    def b(self, b):
        self.__b = b

    @property
    def S(self):
        """Selection mask (only after a per-unit-path fit or when set; else AttributeError)."""
        return self.__S

    @S.setter
    def S(self, S):
        self.__S = S

    def fit(
        self,
        X,
        Y,
        alpha=1.0,
        n_feat=0,
        save_select_feat=False,
        spatial_norm=None,
        select_sample=None,
        chunk_size=0,
        cache_dir=None,
        dtype=np.float64,
    ):
        """Fits the model and returns self.

        X is `(samples, features)`; Y is `(samples, units)` or `(samples, s1, ..., sk)`.
        `n_feat` features are kept per unit (0: all, no selection). `save_select_feat`,
        `spatial_norm` and `select_sample='remove_nan'` take the reference's per-unit path.
        `chunk_size` bounds neurofit's own unit chunks (results do not depend on it).
        `cache_dir` is accepted for compatibility and unused (as in the reference). `dtype`:
        np.float64 or np.float32 (the precision of the fit and of W and b).
        """
        fdt = fit_dtype(dtype)
        _check_spatial_norm(spatial_norm)
        if select_sample is not None and select_sample != "remove_nan":
            raise RuntimeError(("Not implemented selection method:", select_sample))
        n_feat = _check_int(n_feat, "n_feat")
        if n_feat < 0:
            raise ValueError(f"n_feat must be >= 0 (0 keeps every feature), got {n_feat}")
        chunk_size = max(_check_int(chunk_size, "chunk_size"), 0)
        alpha = float(alpha)
        X = as_f64(X, "X")
        Y = as_f64(Y, "Y")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (samples x features), got shape {X.shape}")
        if Y.ndim < 2:
            raise DimensionError(
                f"Y must have at least 2 dimensions (samples x units...), got shape {Y.shape}"
            )
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} samples but Y has {Y.shape[0]} (shapes {X.shape} and {Y.shape})"
            )
        per_unit = bool(save_select_feat) or spatial_norm is not None or select_sample is not None
        show = bool(self.__verbose) or (per_unit and not tqdm_disabled())
        bar = ProgressBar("FastL2LiR fit") if show else None
        try:
            W, b, S, warns, used = _neurofit.fit(
                X,
                Y,
                alpha,
                n_feat,
                chunk_size,
                fdt,
                bool(save_select_feat),
                spatial_norm,
                select_sample,
                device_string(self.device),
                memory_bytes(self.max_memory),
                bar,
            )
        finally:
            if bar is not None:
                bar.close()
        for w in warns:
            warnings.warn(w, UserWarning, stacklevel=2)
        self.__W = W
        self.__b = b
        if S is not None:
            self.__S = S
        elif "_FastL2LiR__S" in self.__dict__:
            # an S of an earlier per-unit fit does not describe this model
            del self.__S
        self.device_used = used
        return self

    def predict(self, X, dtype=np.float64, save_select_feat=False, spatial_norm=None):
        """Predicts `(samples, *unit_shape)` from X `(samples, features)` in `dtype` (default
        float64 whatever the fit's precision, as in the reference). With `spatial_norm`
        (implies `save_select_feat`) each unit's selected features (S) are normalised per
        sample first; `save_select_feat` alone uses only the features S selects."""
        pdt = fit_dtype(dtype)
        _check_spatial_norm(spatial_norm)
        if spatial_norm is not None:
            save_select_feat = True
        W = np.asarray(self.__W)
        if W.size == 0:
            raise ValueError("the model has no weights: fit it or set W and b first")
        if W.ndim < 2:
            raise ValueError(f"W must be (features, units...), got shape {W.shape}")
        units = W.shape[1:]
        b = np.asarray(self.__b)
        n_units = int(np.prod(units))
        if b.size != n_units:
            raise ValueError(f"b has {b.size} values but W {W.shape} has {n_units} units")
        if b.shape in ((1,) + units, units):
            b = b.reshape((1,) + units)
        else:
            b = b.reshape((1,) + units, order="F")
        X = as_f64(X, "X")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (samples x features), got shape {X.shape}")
        S = None
        if save_select_feat:
            S = np.asarray(self.S, dtype=bool)
            if S.shape != W.shape:
                raise ValueError(f"S has shape {S.shape} but W has {W.shape}")
            if spatial_norm is None:
                W, S = np.where(S, W, 0.0), None
        return _neurofit.predict(
            X,
            as_f64(W, "W"),
            as_f64(b, "b"),
            S,
            spatial_norm,
            pdt,
            device_string(self.device),
            memory_bytes(self.max_memory),
        )

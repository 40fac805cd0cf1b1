"""GSN (generative modeling of signal and noise) with the interface of the GSN package
(cvnlab/GSN 1.2.0): `perform_gsn`, `calc_shrunken_covariance` and the shrinkage scorer, run by
neurofit on a GPU or the CPU."""

import warnings

import numpy as np

from . import _neurofit
from ._common import as_f64, device_string, memory_bytes

__all__ = ["perform_gsn", "calc_shrunken_covariance", "shrinkage_nll"]

_RETURNS = (
    "cN",
    "cS",
    "cNb",
    "cSb",
    "eigvecs_signal",
    "eigvals_signal",
    "eigvecs_difference",
    "eigvals_difference",
)
# GSN's torch device names mapped to neurofit devices (neurofit's own names pass through)
_DEVICES = {"cpu": "cpu", "cuda": "gpu", "mps": "gpu", "auto": "auto"}


def _device(dev):
    if dev is None:
        return None
    if not isinstance(dev, str):
        # a torch.device or similar: its type name
        dev = getattr(dev, "type", str(dev))
    base = dev.split(":", 1)[0].lower()
    if base == "cuda" and ":" in dev:
        return "gpu:" + dev.split(":", 1)[1]
    return _DEVICES.get(base, dev)


def _warn(msgs):
    for m in msgs:
        warnings.warn(m, UserWarning, stacklevel=3)


def perform_gsn(data, opt=None):
    """Estimates signal and noise covariances of `data` (units x conditions x trials; NaN marks
    missing trials or, with opt['uneven'] = 'missing', missing values).

    Returns the reference's dict: mnN, mnS (1, N), ncsnr (N,), shrinklevelN, shrinklevelD
    (float), numiters (int), and the items of opt['returns'] (default cN, cS, cNb, cSb).

    `opt` keys: wantverbose, wantshrinkage, shrinklevels, uneven ('fast', 'missing';
    'reference' runs 'fast', which agrees with the legacy path to ~1e-15), returns, backend
    ('auto', 'torch', 'numpy'; 'numpy' runs on the CPU), device ('cpu', 'cuda', 'mps',
    'auto' or a neurofit device; default NEUROFIT_DEVICE, else 'auto'), eigh_device ('host',
    'device'; accepted, eigendecompositions run on the CPU), max_memory. Other keys are
    ignored, as the reference ignores them. float32 data give the reference's float32 outputs
    (mnN, mnS, ncsnr, cN, cS; the rest float64)."""
    opt = {} if opt is None else dict(opt)
    data = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if data.ndim != 3:
        raise ValueError("data must be voxels x conditions x trials (3D)")
    if data.shape[2] < 2:
        raise ValueError("Number of trials must be at least 2.")
    uneven = opt.get("uneven", "fast")
    if uneven not in ("fast", "reference", "missing"):
        raise ValueError(f"opt['uneven'] must be 'fast', 'reference' or 'missing', got {uneven!r}")
    if uneven == "reference":
        uneven = "fast"
    backend = opt.get("backend", "auto")
    if backend not in ("numpy", "torch", "auto"):
        raise ValueError(f"opt['backend'] must be 'numpy', 'torch' or 'auto', got {backend!r}")
    device = _device(opt.get("device"))
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"backend 'numpy' runs on the CPU only; got device {opt.get('device')!r}")
        device = "cpu"
    returns = opt.get("returns", ("cN", "cS", "cNb", "cSb"))
    if isinstance(returns, str):
        returns = (returns,)
    returns = list(returns)
    bad = [r for r in returns if r not in _RETURNS]
    if bad:
        raise ValueError(f"opt['returns'] has unknown item(s) {bad}; valid: {', '.join(_RETURNS)}")
    if any(r.startswith("eig") for r in returns):
        eigh_device = opt.get("eigh_device", "host")
        if eigh_device not in ("host", "device"):
            raise ValueError(f"opt['eigh_device'] must be 'host' or 'device', got {eigh_device!r}")
    levels = opt.get("shrinklevels")
    if levels is not None:
        levels = [float(v) for v in np.asarray(levels, dtype=np.float64).ravel()]
    wantshrinkage = bool(opt.get("wantshrinkage", 1))
    dtype = "f32" if data.dtype == np.float32 else "f64"
    result, warns, _used = _neurofit.perform_gsn(
        as_f64(data, "data"),
        wantshrinkage,
        levels,
        uneven,
        returns,
        dtype,
        device_string(device),
        memory_bytes(opt.get("max_memory")),
    )
    _warn(warns)
    return result


def calc_shrunken_covariance(
    data, leaveout=5, shrinklevels=np.linspace(0, 1, 51), wantfull=0, device=None
):
    """Shrunken covariance with the level chosen by held-out Gaussian NLL.

    `data`: observations x variables (2-D) or observations x variables x cases (3-D; NaN
    rows allowed with >= 2 cases). Returns `(mn, c, shrinklevel, nll)`: the mean ((variables,)
    for 2-D, (1, variables) zeros for 3-D), the shrunk covariance, the chosen level (float)
    and the NLL of every level. `device`: as in perform_gsn (default NEUROFIT_DEVICE, else
    auto)."""
    data = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if data.ndim not in (2, 3):
        raise ValueError(f"data must be 2-D or 3-D, got shape {data.shape}")
    leaveout = int(leaveout)
    levels = [float(v) for v in np.asarray(shrinklevels, dtype=np.float64).ravel()]
    mn, c, level, nll, warns = _neurofit.calc_shrunken_covariance(
        as_f64(data, "data"), leaveout, levels, bool(wantfull), device_string(_device(device))
    )
    _warn(warns)
    if data.ndim == 2:
        mn = mn.reshape(-1)
    return mn, c, level, nll


def shrinkage_nll(c, pts, shrinklevels=np.linspace(0, 1, 51), device=None):
    """Held-out Gaussian NLL of every shrinkage level (the scorer behind the level choice):
    `c` the N x N training covariance, `pts` the M x N held-out points (centred). NaN where
    the shrunk covariance is not positive definite."""
    levels = [float(v) for v in np.asarray(shrinklevels, dtype=np.float64).ravel()]
    return _neurofit.shrinkage_nll(
        as_f64(c, "c"), as_f64(pts, "pts"), levels, device_string(_device(device))
    )

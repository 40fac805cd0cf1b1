"""Helpers shared by the FastL2LiR and GSN front ends: array conversion, devices, progress."""

import os
import sys
import time

import numpy as np

from . import _neurofit

_F64 = np.dtype(np.float64)


def as_f64(a, name):
    """`a` as a float64 ndarray: the array itself (no copy, any strides, memmaps included)
    when it already is native float64, else one converted copy."""
    if isinstance(a, np.ndarray) and a.dtype == _F64:
        return a
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a.astype(np.float64)


def fit_dtype(dtype):
    """The fit precision name ('f32' or 'f64') of a numpy dtype argument."""
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype {dtype!r} is not a numpy dtype") from e
    if d == np.float64:
        return "f64"
    if d == np.float32:
        return "f32"
    # the reference fails inside numpy.linalg for these (float16, integers): same type here
    raise TypeError(f"array type {d} is unsupported in linalg (use float32 or float64)")


def memory_bytes(max_memory):
    """None, a byte count, or a size string such as '2GiB'."""
    if max_memory is None:
        return None
    if isinstance(max_memory, str):
        return _neurofit.parse_size(max_memory)
    n = int(max_memory)
    if n <= 0:
        raise ValueError(f"max_memory must be positive, got {max_memory!r}")
    return n


def device_string(device):
    """A neurofit device string, or None for the default (NEUROFIT_DEVICE, else auto)."""
    if device is None:
        return None
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu', 'gpu' or 'gpu:0', got {device!r}")
    return device


class ProgressBar:
    """A progress bar on stderr: tqdm when it is installed, else a one-line text bar."""

    def __init__(self, desc):
        self.desc = desc
        self.bar = None
        self.t0 = time.monotonic()
        try:
            from tqdm.auto import tqdm  # noqa: F401
            self._tqdm = tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, done, total):
        if self._tqdm is not None:
            if self.bar is None:
                self.bar = self._tqdm(total=total, desc=self.desc, unit="unit")
            self.bar.update(done - self.bar.n)
            return
        frac = done / total if total else 1.0
        width = 30
        fill = int(frac * width)
        sys.stderr.write(
            f"\r{self.desc}: {frac:4.0%} [{'=' * fill}{' ' * (width - fill)}] {done}/{total} units "
            f"{time.monotonic() - self.t0:.1f}s"
        )
        sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self._tqdm is None:
            sys.stderr.write("\n")
            sys.stderr.flush()


def tqdm_disabled():
    """True when TQDM_DISABLE is set to a true value (as tqdm itself reads it)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")

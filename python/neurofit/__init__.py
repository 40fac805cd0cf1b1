"""neurofit: FastL2LiR and GSN on any GPU (WGSL compute shaders through wgpu: Vulkan, Metal,
DX12) or the CPU, with the interfaces of the `fastl2lir` (0.11) and GSN (1.2.0) packages.

    from neurofit import FastL2LiR            # or: from neurofit.fastl2lir import FastL2LiR
    from neurofit import perform_gsn          # or: from neurofit.gsn import perform_gsn

The default device is the environment variable NEUROFIT_DEVICE when set ('cpu', 'gpu',
'gpu:0', ...), else 'auto'. `neurofit.devices()` lists what is available.
"""

from . import _neurofit
from ._neurofit import DeviceUnavailableError, GpuError, OutOfMemoryError
from .fastl2lir import FastL2LiR
from .gsn import calc_shrunken_covariance, perform_gsn, shrinkage_nll

__version__ = _neurofit.__version__

__all__ = [
    "FastL2LiR",
    "perform_gsn",
    "calc_shrunken_covariance",
    "shrinkage_nll",
    "devices",
    "default_device",
    "OutOfMemoryError",
    "GpuError",
    "DeviceUnavailableError",
]


def devices():
    """The devices neurofit can use, as `neurofit devices` lists them: one dict per GPU adapter
    (id 'gpu:N', name, backend, device_type, software, shader_f64, memory, ...) then the CPU."""
    return _neurofit.devices()


def default_device():
    """The device used when none is passed: NEUROFIT_DEVICE when set, else 'auto'."""
    return _neurofit.default_device()

"""numba.cuda backend: the same per-condition adaptive Tsit5 and interpolating adjoint as the CPU kernels,
executed with all conditions stepping in lockstep iterations so that W x becomes a matrix product.

Each condition keeps its own time, step size, accept/reject decisions and observation hits (exactly the CPU
algorithm, from the same controller functions and tableau), but every iteration evaluates a stage for all
conditions at once: Z = X W^T (M x n times n x n), and in the adjoint G W and the quadrature G^T X, through a
tiled shared-memory kernel (or cuBLAS through CuPy when it is installed and ``CELLBOX_NB_GEMM=cublas``).
Parameters and buffers stay on the device for a whole solve or gradient.

Install: ``pip install 'cellbox-nb[cuda]'`` (numba-cuda).  Without a GPU the kernels run under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``), which the tests use.
"""

from ..errors import ConfigError


def cuda_available():
    """True when numba.cuda can run kernels (a GPU with a driver, or the simulator)."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - import problems mean no CUDA
        return False


def require_cuda():
    if not cuda_available():
        raise ConfigError("backend 'cuda': no usable CUDA device (install numba-cuda and an NVIDIA driver, or set "
                          "NUMBA_ENABLE_CUDASIM=1 to use the simulator)")


def solve_cuda(*args, **kwargs):
    from .driver import solve_cuda as impl

    return impl(*args, **kwargs)


def loss_grad_cuda(*args, **kwargs):
    from .driver import loss_grad_cuda as impl

    return impl(*args, **kwargs)

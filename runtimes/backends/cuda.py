"""cuda-python, as the TensorRT backend and export use it: the runtime API module, checked calls and GPU names (never torch)."""

from edgeseg.runtimes.errors import EdgesegError


def import_cudart():
    """cuda-python's runtime API module (``cuda.bindings.runtime``; ``cuda.cudart`` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def cuda_call(cudart, result, what: str):
    """The values of a cuda-python call's ``(error, *values)`` result (one value unwrapped, none → None).

    Raises:
        EdgesegError: a CUDA error, named with ``what``.
    """
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise EdgesegError(f"CUDA error in {what}: {cudart.cudaGetErrorName(error)[1].decode()} (is an NVIDIA GPU with a working driver present?)")
    return values[0] if len(values) == 1 else (values or None)


def gpu_name(cudart, index: int) -> str:
    """The name of CUDA device ``index``."""
    props = cuda_call(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")

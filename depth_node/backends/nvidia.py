"""TensorRT and the CUDA runtime (cuda-python), imported on demand with an install hint, plus the GPU's identity.

Shared by the engine builder (``depth_node.engine_build``) and the engine runner (``tensorrt_backend``); neither this
module nor those import torch, so a robot needs only numpy, OpenCV, ONNX, TensorRT and cuda-python to build and run.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_TENSORRT = (10, 11)  # majors the build and run code is written for
INSTALL_HINT = ("install TensorRT 10 or 11 and the CUDA Python bindings of the driver's CUDA major version, e.g. "
                "`pip install 'tensorrt-cu12>=10,<12' 'cuda-python>=12,<13'` (the tensorrt-cu12 wheels come from "
                "NVIDIA's index, pypi.nvidia.com; Jetson: JetPack's python3-libnvinfer)")


def tensorrt():
    """The ``tensorrt`` module; ImportError naming what to install when it is missing or of an unsupported major."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise ImportError(f"the tensorrt backend needs the tensorrt Python package: {INSTALL_HINT}") from error
    if tensorrt_major(trt.__version__) not in SUPPORTED_TENSORRT:
        raise ImportError(f"TensorRT {trt.__version__} is not supported (majors {SUPPORTED_TENSORRT}): {INSTALL_HINT}")
    return trt


def tensorrt_major(version: str) -> int:
    """``"10.13.0.35"`` -> 10."""
    return int(str(version).split(".")[0])


def cuda_runtime():
    """cuda-python's runtime API module (``cuda.bindings.runtime`` since 12.6, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as error:
            raise ImportError(f"the tensorrt backend needs cuda-python for GPU buffers: {INSTALL_HINT}") from error
    return runtime


def cuda_check(result: tuple) -> Any:
    """cuda-python calls return ``(error, *values)``: raise on an error, else return the value(s)."""
    error, *values = result
    if error != cuda_runtime().cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA call failed: {error!r}")
    return values[0] if len(values) == 1 else tuple(values) or None


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (naming what to install), or None."""
    try:
        tensorrt()
        cudart = cuda_runtime()
    except ImportError as error:
        return str(error)
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA GPU is usable ({error!r}): TensorRT needs an NVIDIA GPU with its driver"
    return None


def require_gpu() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)


def machine_key() -> dict[str, str]:
    """What makes an engine valid on this machine: the GPU model and compute capability, the TensorRT version."""
    props = cuda_check(cuda_runtime().cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}",
            "tensorrt": tensorrt().__version__}

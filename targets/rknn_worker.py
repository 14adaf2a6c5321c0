"""rknn-toolkit2 worker: builds a .rknn from an ONNX graph, then runs it in the toolkit's simulator on request.

The RKNN target (``edgeseg.targets.rknn``) runs this file with the python of the converter venv,
where edgeseg is not installed: it imports only rknn-toolkit2 and numpy. The simulator runs only
a model built in the same process (a ``.rknn`` loaded from a file needs a board), so the worker
stays alive after the build and export verification sends it its images.

    python rknn_worker.py CONFIG.json

CONFIG: ``{"onnx": path, "out": path of the .rknn to write, "platform": "rk3588", "int8": bool,
"dataset": path of the calibration list or null}``.

Protocol, on the process's original stdout (the toolkit's own prints are sent to stderr): one
JSON line, ``{"ok": true, "toolkit": version}`` or ``{"ok": false, "error": message}``; then, for
each array read from stdin ((1, H, W, 3) uint8 RGB pixels), one float32 array per model output,
in the ONNX graph's order. An array travels as a JSON line ``{"dtype", "shape"}`` and its raw
bytes (``write_array`` / ``read_array``: pipes cannot seek, which ``np.load`` needs). End of
stdin ends the worker.
"""

import json
import os
import sys

import numpy as np


def write_array(stream, array: np.ndarray) -> None:
    """``array`` as a JSON header line and its C-order bytes."""
    array = np.ascontiguousarray(array)
    stream.write((json.dumps({"dtype": array.dtype.str, "shape": list(array.shape)}) + "\n").encode())
    stream.write(array.tobytes())


def read_array(stream) -> np.ndarray:
    """The next array ``write_array`` wrote to ``stream``.

    Raises:
        EOFError: the stream ended (cleanly before a header, or inside an array).
    """
    line = stream.readline()
    if not line:
        raise EOFError("end of stream")
    header = json.loads(line)
    dtype, shape = np.dtype(header["dtype"]), tuple(int(n) for n in header["shape"])
    size = int(np.prod(shape)) * dtype.itemsize
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the stream ended inside an array ({len(data)} of {size} bytes)")
    return np.frombuffer(data, dtype).reshape(shape)


def reply(stream, message: dict) -> None:
    """One JSON line on the protocol stream."""
    stream.write((json.dumps(message) + "\n").encode())
    stream.flush()


def build_steps(rknn, config: dict) -> list:
    """(name, call) pairs that configure, load, build, export and start the simulator; each call returns 0 on success."""
    return [
        ("config", lambda: rknn.config(
            mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]],  # the board feeds uint8 pixels; the graph wants 0-1
            target_platform=config["platform"], quantized_dtype="w8a8", quantized_algorithm="normal",
            quantized_method="channel", optimization_level=3,
        )),
        ("load_onnx", lambda: rknn.load_onnx(model=config["onnx"])),
        ("build", lambda: rknn.build(do_quantization=config["int8"], dataset=config["dataset"])),
        ("export_rknn", lambda: rknn.export_rknn(config["out"])),
        ("init_runtime", lambda: rknn.init_runtime()),
    ]  # fmt: skip


def serve(rknn, requests, replies) -> None:
    """Run each (1, H, W, 3) uint8 array read from ``requests`` and write its outputs, float32, to ``replies``."""
    while True:
        try:
            image = read_array(requests)
        except EOFError:
            return
        outputs = rknn.inference(inputs=[image], data_format="nhwc")
        for output in outputs:
            write_array(replies, np.asarray(output, dtype=np.float32))
        replies.flush()


def main() -> int:
    """Build, report, serve; the exit status is 0 after a served session, 1 when the build failed."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # edgeseg's rknn.py beside this file is not the toolkit
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the toolkit prints its progress on stdout
    with open(sys.argv[1]) as file:
        config = json.load(file)
    from rknn.api import RKNN

    rknn = RKNN(verbose=False)
    for name, step in build_steps(rknn, config):
        try:
            status = step()
        except Exception as exc:  # the toolkit raises ValueError and others as often as it returns -1
            status = f"{type(exc).__name__}: {exc}"
        if status != 0:
            reply(replies, {"ok": False, "error": f"rknn-toolkit2 {name} failed ({status})"})
            return 1
    from importlib.metadata import version

    reply(replies, {"ok": True, "toolkit": version("rknn-toolkit2")})
    serve(rknn, sys.stdin.buffer, replies)
    rknn.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())

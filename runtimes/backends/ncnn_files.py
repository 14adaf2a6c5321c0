"""An NCNN model folder's files: their names and the param file's input and output blobs (the one ``Input`` layer; the blobs no layer consumes)."""

from edgeseg.runtimes.errors import EdgesegError

PARAM, WEIGHTS = "model.ncnn.param", "model.ncnn.bin"
PARAM_MAGIC = "7767517"  # the first line of every ncnn param file
MAX_PARAM_BYTES = 16 << 20  # a yolo11x-seg param file is ~60 kB


def param_blobs(text: str, path) -> tuple[str, list[str]]:
    """(input blob, output blobs) of an ncnn param file's text: the ``Input`` layer's top, and the tops no layer consumes.

    Raises:
        EdgesegError: not a param file (magic line, counts), or not exactly one input.
    """
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != [PARAM_MAGIC] or len(lines[1]) != 2:
        raise EdgesegError(f"{path}: not an ncnn param file (it must start with {PARAM_MAGIC} and the layer/blob counts)")
    inputs, produced, consumed = [], [], set()
    for fields in lines[2:]:
        try:
            kind, n_in, n_out = fields[0], int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise EdgesegError(f"{path}: malformed ncnn layer line {' '.join(fields)[:80]!r}") from None
        bottoms, tops = fields[4 : 4 + n_in], fields[4 + n_in : 4 + n_in + n_out]
        consumed.update(bottoms)
        produced += tops
        if kind == "Input":
            inputs += tops
    outputs = [blob for blob in produced if blob not in consumed]
    if len(inputs) != 1:
        raise EdgesegError(f"{path}: expected one Input layer, found {len(inputs)}")
    return inputs[0], outputs

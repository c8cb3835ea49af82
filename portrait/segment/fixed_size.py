"""A dynamic-size TFLite model fixed at one input size, so that XNNPACK runs it at full speed.

``python -m portrait.training.export`` writes our fully convolutional models with a dynamic
(1, H, W, 3) input: one file serves every frame aspect. Run as is (``resize_tensor_input``), such a
model is about 10 % slower than one converted at a fixed size (14.4 vs 12.8 ms for the shipped
live model at 352x192 on the development machine): its bilinear upsampling sizes are computed at
run time (SHAPE → STRIDED_SLICE → MUL → PACK), and XNNPACK only takes a resize whose size is a
constant, so the graph falls apart into several delegate partitions.

:func:`fix_input_size` rewrites the flatbuffer for one size, as the converter would have written
it: the input shape is fixed, every tensor gets its static shape, and the small shape computations
are folded into constants (their values read from one run of the model at that size, without
delegates). The result computes what the dynamic model computes (to float rounding: XNNPACK may
order the sums differently; identical for the shipped live model) as fast as a fixed-size
conversion. It needs no TensorFlow, only the interpreter and the flatbuffer schema.
"""

from __future__ import annotations

import logging

import numpy as np

from portrait.segment import tflite_utils

log = logging.getLogger(__name__)

# Bump when the rewrite changes, so cached results are made again.
FIXED_FORMAT = "1"
# Ops whose outputs are folded when all their inputs are constant: small shape arithmetic only.
MAX_FOLDED_ELEMENTS = 64


def fix_input_size(content: bytes, size: tuple[int, int]) -> bytes:
    """Return the model with its dynamic input fixed at ``size`` and shape arithmetic folded.

    Args:
        content: a ``.tflite`` with one subgraph and one (1, H, W, 3) input, H and W dynamic.
        size: (width, height) to fix.

    Returns:
        The rewritten ``.tflite`` bytes (metadata kept).

    Raises:
        ValueError: a model this rewrite does not handle (several subgraphs, an input that is
            not dynamic in height and width), or one that fails to run at ``size``.
    """
    schema = tflite_utils._schema()
    root = schema.Model.GetRootAs(content, 0)
    if root.SubgraphsLength() != 1:
        raise ValueError(f"{root.SubgraphsLength()} subgraphs: expected 1")
    with tflite_utils._corrupt_as_value_error():
        model = schema.ModelT.InitFromObj(root)
    graph = model.subgraphs[0]
    codes = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}

    def op_name(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")

    def constant(tensor: int) -> bool:
        data = model.buffers[graph.tensors[tensor].buffer].data
        return data is not None and len(data) > 0

    # What may fold, before the sizes are known: SHAPE and what computes from constants and it.
    # These alone are made outputs of the one run below, so the interpreter keeps their values
    # and reuses the rest of its memory: keeping every tensor (preserve_all_tensors) held each
    # layer's activations at once, 8.5 GB at 1024x1024 and killed by the system at 2048x2048.
    maybe = set()
    for op in graph.operators:
        if op_name(op) == "SHAPE" or all(t in maybe or constant(t) for t in op.inputs if t >= 0):
            maybe.update(int(t) for t in op.outputs)
    outputs = list(graph.outputs)
    graph.outputs = np.array(outputs + sorted(maybe - {int(t) for t in outputs}), np.int32)
    probe = tflite_utils.pack_model(model)
    graph.outputs = np.array(outputs, np.int32)

    width, height = size
    interpreter = tflite_utils.make_interpreter(probe, 1, plain=True)
    detail = interpreter.get_input_details()
    signature = list(detail[0].get("shape_signature", detail[0]["shape"])) if len(detail) == 1 else []
    if len(signature) != 4 or signature[1] != -1 or signature[2] != -1:
        raise ValueError(f"input shape signature {signature}: expected (1, -1, -1, 3)")
    try:
        interpreter.resize_tensor_input(detail[0]["index"], [1, height, width, 3], strict=False)
        interpreter.allocate_tensors()
        interpreter.invoke()  # resolves every shape, and the values of the shape arithmetic
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"the model does not run at {width}x{height}: {error}") from None
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in interpreter.get_tensor_details()}

    folded_ops, folded = set(), set()
    for i, op in enumerate(graph.operators):
        inputs = [t for t in op.inputs if t >= 0]
        small = all(int(np.prod(shapes[t])) <= MAX_FOLDED_ELEMENTS for t in op.outputs)
        if small and (op_name(op) == "SHAPE" or all(t in folded or constant(t) for t in inputs)):
            folded_ops.add(i)
            folded.update(int(t) for t in op.outputs)
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in folded_ops]
    still_read = {int(t) for op in graph.operators for t in op.inputs} | {int(t) for t in graph.outputs}
    for tensor in sorted(folded & still_read):
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(interpreter.get_tensor(tensor).tobytes(), np.uint8)
        model.buffers.append(buffer)
        graph.tensors[tensor].buffer = len(model.buffers) - 1
    for index, tensor in enumerate(graph.tensors):
        if index in shapes:
            tensor.shape = np.array(shapes[index], np.int32)
            tensor.shapeSignature = None
    log.debug("fixed the input at %dx%d: folded %d shape ops", width, height, len(folded_ops))
    return tflite_utils.pack_model(model)


def fixed_cached(content: bytes, size: tuple[int, int], stem: str):
    """:func:`fix_input_size` through the conversion cache (keyed by the bytes and the size).

    Returns:
        (bytes, cache path or None, cache hit) as :func:`tflite_utils.cached_file`.
    """
    import hashlib

    width, height = size
    text = f"{hashlib.sha256(content).hexdigest()}|{width}x{height}|fixed{FIXED_FORMAT}"
    key = hashlib.sha256(text.encode()).hexdigest()
    return tflite_utils.cached_file(f"{stem}-{width}x{height}", key, lambda: fix_input_size(content, size))

"""ONNX: a graph as an ONNX model (the time steps unrolled), run by onnxruntime (DESIGN §4).

    lower.py    export_onnx: the engine traced by torch's ONNX exporter, cf2neuro metadata,
                integer-only for quantized graphs (what the emulator computes, exactly)
    runner.py   the ``onnxruntime`` runner: a cf2neuro .onnx file, or a graph exported on the fly

Float graphs run in float32; graphs quantized for a fixed-point target
(e.g. loihi2) run in int64, bit-exact with the emulator. Target ``onnx``
is the float form; the fixed-point targets list the runner too.
"""

from .. import Backend

BACKEND = Backend(
    name="onnx",
    description="ONNX models run by onnxruntime: float32, or a quantized graph's integers",
    runners={"onnxruntime": "cf2neuro.backends.onnx.runner:OnnxRuntimeRunner"},
    exporters={".onnx": "cf2neuro.backends.onnx.lower:export_onnx"},
)

"""The pipeline from Python: train a CF network, export NIR, run it, verify on Loihi 2, ONNX.

    .venv/bin/python examples/quickstart.py [OUT_DIR]

The same steps as `cf2neuro demo`, through the API functions the CLI calls.
"""

import sys
from pathlib import Path

from cf2neuro import api
from cf2neuro.train import TrainConfig, train
from cf2neuro.verify import test_inputs, verify

out = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart")

# 1. Train: a signed, K = 2 CF-MLP on the embedded digits, with the PN loss.
cfg = TrainConfig(epochs=40, neuron={"max_spikes": 2, "beta": 0.5}, pn_lambda=0.3)
metrics = train(cfg, out / "ckpt")
print(f"trained: test accuracy {metrics['test_accuracy']:.4f}")

# 2. Export to NIR and run the file on the float reference runner.
api.export(out / "ckpt", out / "model.nir")
x, labels = test_inputs(out / "ckpt", limit=8)
res = api.run(out / "model.nir", runner="reference", inputs=x.numpy(),
              probes=["layers.2", "v:layers.2"])
print("reference run:", {k: v.shape for k, v in res.items()})
print("predictions:", res["output"].sum(0).argmax(-1), "labels:", labels)

# 3. Quantize for Loihi 2 and verify on the emulator (use runner="lava" for real Lava).
report = verify(out / "ckpt", "loihi2", runner="emulator", report_dir=out / "verify")
print(f"loihi2: float {report['float_accuracy']:.4f}, quantized {report['quantized_accuracy']:.4f}, "
      f"agreement {report['argmax_agreement']:.4f} -> {out / 'verify' / 'verify.md'}")

# 4. The same network as ONNX files: float, and its Loihi 2 integers; then onnxruntime and
#    the emulator on the same on-the-fly quantization: the same integers, bit for bit.
api.export(out / "ckpt", out / "model.onnx")
api.export(out / "ckpt", out / "model_q.onnx", target="loihi2")
ort = api.run(out / "ckpt", runner="onnxruntime", target="loihi2", inputs=x.numpy())
emu = api.run(out / "ckpt", runner="emulator", target="loihi2", inputs=x.numpy())
print("onnxruntime == emulator:", bool((ort["output"] == emu["output"]).all()))

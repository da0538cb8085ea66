"""Ray job: export a trained model (ONNX, torch.export .pt2, TorchScript, safetensors) with its classes and preprocessing."""
from _entry import run
run("export")

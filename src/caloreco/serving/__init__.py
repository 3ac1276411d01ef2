"""Deployment: export of trained networks (ONNX, TorchScript) and their pre-processing."""

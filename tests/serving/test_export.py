"""Export: ONNX (run in onnxruntime) and TorchScript reproduce the PyTorch network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig
from caloreco.serving.export import FrozenNetwork, export_onnx, export_torchscript, onnx_session

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _event(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) * torch.tensor([50.0, 50.0, 30.0]) + 200
    k = n // 3
    pts[:k] = pts[k:2 * k] + 0.02  # a third of the hits share a voxel with another hit
    return torch.randn(n, 7, generator=g), pts, torch.zeros(n, dtype=torch.long)


@pytest.fixture(scope="module")
def frozen() -> FrozenNetwork:
    torch.manual_seed(0)
    model = SPVCNN(SPVCNNConfig(in_features=7, cr=0.125, coord_dim=3))
    # non-trivial batch-norm statistics, so that eval-mode normalisation is exercised
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(*_event(300, 100 + seed))
    return FrozenNetwork(model.eval())


def test_onnx_matches_pytorch_on_several_sizes(frozen, tmp_path):
    path = export_onnx(frozen, frozen.example_inputs(*_event(200, 1)), tmp_path / "net.onnx")
    onnx.checker.check_model(str(path))
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    ops = {n.op_type for n in proto.graph.node}
    # index_add must be an accumulating scatter (the legacy exporter's overwrite is wrong)
    for node in proto.graph.node:
        if node.op_type in ("ScatterND", "ScatterElements"):
            reduction = {a.name: a.s for a in node.attribute}.get("reduction", b"none")
            assert reduction == b"add", node
    assert "Gather" in ops and "MatMul" in ops
    sess = onnx_session(path)
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "features" and names[1:] == frozen.names
    # 12000 hits: large enough for onnxruntime to split a ScatterND over threads, where its
    # non-atomic add races (see onnx_session)
    for n, seed in ((57, 2), (480, 3), (1500, 4), (12000, 5)):
        feats, pts, batch = _event(n, seed)
        with torch.no_grad():
            coords, beta = frozen.model(feats, pts, batch)
        inputs = frozen.example_inputs(feats, pts, batch)
        got = sess.run(["coords", "beta"], {k: v.numpy() for k, v in zip(names, inputs)})
        np.testing.assert_allclose(got[0], coords.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[1], beta.numpy(), rtol=1e-4, atol=1e-5)


def test_torchscript_matches_pytorch(frozen, tmp_path):
    path = export_torchscript(frozen, frozen.example_inputs(*_event(150, 5)), tmp_path / "net.pt")
    loaded = torch.jit.load(str(path))
    for n, seed in ((90, 6), (900, 7)):
        feats, pts, batch = _event(n, seed)
        with torch.no_grad():
            coords, beta = frozen.model(feats, pts, batch)
            got = loaded(*frozen.example_inputs(feats, pts, batch))
        torch.testing.assert_close(got[0], coords, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[1], beta, rtol=1e-4, atol=1e-5)

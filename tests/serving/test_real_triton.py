"""The exported model repository in a real NVIDIA Triton Inference Server.

The server is the ``tritonserver`` binary (Triton 2.51, with the Python backend) that the
``nvidia-pytriton`` wheel bundles; ``make test`` installs it (``--no-deps``: only the
binary is used). Its Python backend runs our pre-processing, network (torch or
onnxruntime inside the backend: the wheel has no libtorch or onnxruntime backend) and
condensation models in this interpreter's environment. The official ``tritonclient``
sends dtau events over HTTP and gRPC; the clusters must equal in-process
:class:`~caloreco.clustering.model_clustering.ModelClusterer` exactly.

Skipped when the wheel is not installed or has no Python-backend stub for this Python.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from caloreco.__main__ import entry
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.parquet import read_events
from caloreco.serving.protocol import events_to_request

try:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
except (ImportError, RuntimeError) as exc:  # without its http extra, tritonclient.http raises RuntimeError
    pytest.skip(f"tritonclient with http and grpc support is needed: {exc}", allow_module_level=True)
pytest.importorskip("onnxruntime")

#: Seconds allowed for the server to load the six Python-backend models.
STARTUP_S = 300

#: one server for the module: under pytest-xdist (``--dist loadgroup``) its tests share a worker
pytestmark = pytest.mark.xdist_group("real_triton")


def _pytriton_dist() -> tuple[Path, Path] | None:
    """``(tritonserver dir, bundled libs dir)`` of an installed nvidia-pytriton, or None."""
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    dist, libs = pkg / "tritonserver", pkg.parent / "nvidia_pytriton.libs"
    if not (dist / "bin" / "tritonserver").exists() or not libs.is_dir():
        return None
    return dist, libs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real tritonserver on free localhost ports serving two exported repositories:
    ``caloreco`` (TorchScript network) and ``calo_onnx`` (ONNX network)."""
    found = _pytriton_dist()
    if found is None:
        pytest.skip("nvidia-pytriton (the bundled tritonserver) is not installed")
    dist, libs = found
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        pytest.skip(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    root = tmp_path_factory.mktemp("real-triton")
    # the backend directory as pytriton prepares it: the Python backend plus this
    # interpreter's stub
    backends = root / "backends"
    shutil.copytree(dist / "backends", backends)
    shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
    repos = []
    for fmt, name in (("torchscript", "caloreco"), ("onnx", "calo_onnx")):
        repo = root / f"repo-{fmt}"
        assert entry(["export", "--format", fmt, "--triton-repo", str(repo), "--triton-name",
                      name, "--triton-network-backend", "python"]) == 0
        repos.append(repo)
    http_port, grpc_port = _free_port(), _free_port()
    env = dict(os.environ)
    # the stub embeds libpython and takes its sys.prefix from the python3 first on PATH:
    # this interpreter's (virtual) environment, where caloreco and torch are installed
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH"))
        if p)
    src = Path(importlib.util.find_spec("caloreco").origin).parent.parent
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    log = (root / "tritonserver.log").open("w")
    cmd = [str(dist / "bin" / "tritonserver"), "--backend-directory", str(backends),
           *(f"--model-repository={r}" for r in repos), f"--http-port={http_port}",
           f"--grpc-port={grpc_port}", "--allow-metrics=false", "--http-address=127.0.0.1",
           "--grpc-address=127.0.0.1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    urls = {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}
    try:
        client = httpclient.InferenceServerClient(urls["http"])
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tritonserver exited ({proc.returncode}):\n"
                            f"{(root / 'tritonserver.log').read_text()[-4000:]}")
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tritonserver not ready after {STARTUP_S} s:\n"
                            f"{(root / 'tritonserver.log').read_text()[-4000:]}")
            time.sleep(1.0)
        yield urls
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def dtau_events(dtau_dataset: Path) -> list:
    return read_events(sorted(dtau_dataset.glob("*.parquet"))[0])[:2]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["caloreco", "calo_onnx"])
def test_real_server_equals_in_process_clustering(triton, dtau_events, protocol, model):
    mod = httpclient if protocol == "http" else grpcclient
    client = mod.InferenceServerClient(triton[protocol])
    assert client.is_model_ready(model)
    raw, offsets = events_to_request(dtau_events)
    inputs = [mod.InferInput("FEATURES", list(raw.shape), "FP32"),
              mod.InferInput("EVENT_OFFSETS", list(offsets.shape), "INT64")]
    inputs[0].set_data_from_numpy(raw)
    inputs[1].set_data_from_numpy(offsets)
    result = client.infer(model, inputs)
    ref = ModelClusterer.from_checkpoint().cluster_events(dtau_events, batch_size=2)
    cid, beta = result.as_numpy("CLUSTER_ID"), result.as_numpy("BETA")
    for b, pred in enumerate(ref):
        sl = slice(offsets[b], offsets[b + 1])
        np.testing.assert_array_equal(cid[sl], pred.cluster_id)
        np.testing.assert_allclose(beta[sl], pred.beta, rtol=1e-4, atol=1e-5)
    assert (cid >= 0).any()


def test_real_server_reports_bad_hits_and_keeps_serving(triton, dtau_events):
    client = httpclient.InferenceServerClient(triton["http"])
    raw, _ = events_to_request(dtau_events[:1])
    bad = raw.copy()
    bad[3, 0] = np.nan  # NaN energy
    x = httpclient.InferInput("FEATURES", list(bad.shape), "FP32")
    x.set_data_from_numpy(bad)
    with pytest.raises(Exception, match="column 'energy' must be finite.*at hit 3"):
        client.infer("caloreco", [x])
    x.set_data_from_numpy(raw)
    [pred] = ModelClusterer.from_checkpoint().cluster_events(dtau_events[:1])
    np.testing.assert_array_equal(client.infer("caloreco", [x]).as_numpy("CLUSTER_ID"),
                                  pred.cluster_id)

"""``caloreco serve``: the KServe v2 / Triton protocol server, driven by the official
``tritonclient`` HTTP and gRPC clients, against in-process ``ModelClusterer`` clustering."""

from __future__ import annotations

from http.client import HTTPConnection
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

from caloreco.serving.protocol import events_to_request, hits_to_features

try:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
except (ImportError, RuntimeError) as exc:  # without its http extra, tritonclient.http raises RuntimeError
    pytest.skip(f"tritonclient with http and grpc support is needed: {exc}", allow_module_level=True)
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "caloreco_spvcnn"
MAX_HITS = 30_000
MAX_BODY = 8 << 20
OUTPUTS = ("CLUSTER_ID", "BETA", "COORDS")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def events(tiny_events: list) -> list:
    """Two dtau events (~7k and ~11k hits, many clusters, noise) and four small e- showers."""
    from caloreco.simulation.production import DatasetSpec, simulate_range

    return simulate_range(DatasetSpec(preset="dtau", n_events=2, seed=11), 0, 2) + list(tiny_events)


@pytest.fixture(scope="module")
def reference(events: list) -> list:
    """In-process clustering of ``events`` with the shipped model, one event per call."""
    from caloreco.clustering.model_clustering import ModelClusterer

    return ModelClusterer.from_checkpoint(None).cluster_events(events)


def _server(**kwargs: Any) -> Any:
    from caloreco.serving.server import InferenceServer

    opts = dict(http_port=0, grpc_port=0, max_hits=MAX_HITS, max_body_bytes=MAX_BODY,
                max_batch_events=4, max_queue_delay_us=30_000)
    return InferenceServer.from_checkpoint(None, **{**opts, **kwargs}).start()


@pytest.fixture(scope="module")
def server() -> Any:
    srv = _server()
    yield srv
    srv.stop(5.0)


@pytest.fixture()
def http(server: Any) -> Any:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


@pytest.fixture()
def grpc(server: Any) -> Any:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


# ---------------------------------------------------------------------------- helpers
def _inputs(module: Any, features: np.ndarray, offsets: np.ndarray | None = None, *,
            binary: bool = True, dtype: str = "FP32") -> list:
    first = module.InferInput("FEATURES", list(features.shape), dtype)
    kw = {"binary_data": binary} if module is httpclient else {}
    first.set_data_from_numpy(features, **kw)
    if offsets is None:
        return [first]
    second = module.InferInput("EVENT_OFFSETS", list(offsets.shape), "INT64")
    second.set_data_from_numpy(offsets, **kw)
    return [first, second]


def _check(result: Any, reference: list, which: list[int]) -> None:
    """Outputs of a request holding events ``which`` equal in-process clustering."""
    cid, beta, coords = (result.as_numpy(n) for n in OUTPUTS)
    ref = [reference[i] for i in which]
    assert cid.dtype == np.int64 and beta.dtype == np.float32 and coords.dtype == np.float32
    assert coords.shape == (sum(len(r.beta) for r in ref), reference[0].coords.shape[1])
    np.testing.assert_array_equal(cid, np.concatenate([r.cluster_id for r in ref]))
    np.testing.assert_allclose(beta, np.concatenate([r.beta for r in ref]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(coords, np.concatenate([r.coords for r in ref]), rtol=1e-5, atol=1e-5)


def _raises(fn: Callable[[], Any], status: str, *words: str) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn()
    exc = info.value
    assert status in str(exc.status()), (exc.status(), exc.message())
    for w in words:
        assert w in exc.message(), exc.message()
    return exc.message()


# ---------------------------------------------------------------------------- tests
def test_health_metadata_and_config(http, grpc, server):
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(MODEL)
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready(MODEL)
    assert not http.is_model_ready("nope")
    meta = http.get_server_metadata()
    assert meta["name"] == "caloreco" and "binary_tensor_data" in meta["extensions"]
    assert grpc.get_server_metadata().name == "caloreco"
    for md in (http.get_model_metadata(MODEL), grpc.get_model_metadata(MODEL, as_json=True)):
        assert md["name"] == MODEL and md["versions"] == ["1"]
        assert [(t["name"], t["datatype"]) for t in md["inputs"]] == [("FEATURES", "FP32"), ("EVENT_OFFSETS", "INT64")]
        # the shipped model has a signal head: its probability per hit is served too
        assert [t["name"] for t in md["outputs"]] == [*OUTPUTS, "SIGNAL"]
    cfg = http.get_model_config(MODEL)
    gcfg = grpc.get_model_config(MODEL, as_json=True)["config"]
    for c in (cfg, gcfg):
        assert c["name"] == MODEL and int(c.get("max_batch_size", 0)) == 0  # proto JSON omits zeros
        assert [int(d) for d in c["input"][0]["dims"]] == [-1, 7] and c["input"][1]["optional"]
        assert [int(d) for d in c["output"][2]["dims"]] == [-1, 5]
        assert int(c["dynamic_batching"]["max_queue_delay_microseconds"]) == 30_000
        assert c["parameters"]["feature_columns"]["string_value"] == "energy,x,y,z,layer,time,cell_type"
        assert float(c["parameters"]["t_signal"]["string_value"]) == 0.3
    assert http.get_model_metadata(MODEL, model_version="1")["name"] == MODEL
    _raises(lambda: http.get_model_metadata(MODEL, model_version="2"), "404", "no version '2'")
    _raises(lambda: grpc.get_model_config("nope"), "NOT_FOUND", "unknown model 'nope'")


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (True, False)])
def test_http_infer_matches_in_process(http, events, reference, binary_in, binary_out):
    features, offsets = events_to_request(events)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in OUTPUTS]
    result = http.infer(MODEL, _inputs(httpclient, features, offsets, binary=binary_in), outputs=outputs,
                        request_id="r1")
    assert result.get_response()["id"] == "r1"
    _check(result, reference, list(range(len(events))))


def test_http_single_event_default_outputs_and_compression(http, events, reference):
    result = http.infer(MODEL, _inputs(httpclient, hits_to_features(events[1].hits)),
                        request_compression_algorithm="gzip", response_compression_algorithm="deflate")
    _check(result, reference, [1])
    result = http.infer(MODEL, _inputs(httpclient, hits_to_features(events[2].hits)),
                        outputs=[httpclient.InferRequestedOutput("CLUSTER_ID")])
    assert result.as_numpy("BETA") is None
    np.testing.assert_array_equal(result.as_numpy("CLUSTER_ID"), reference[2].cluster_id)


def test_grpc_infer_matches_in_process_with_empty_event(grpc, events, reference):
    features, offsets = events_to_request(events)
    _check(grpc.infer(MODEL, _inputs(grpcclient, features, offsets)), reference, list(range(len(events))))
    # an empty event between two events, and a request without hits
    sel = [events[3], events[4]]
    feats, _ = events_to_request(sel)
    n3 = len(events[3].hits["energy"])
    result = grpc.infer(MODEL, _inputs(grpcclient, feats, np.array([0, n3, n3, len(feats)])))
    _check(result, reference, [3, 4])
    empty = grpc.infer(MODEL, _inputs(grpcclient, np.zeros((0, 7), np.float32)))
    assert empty.as_numpy("CLUSTER_ID").shape == (0,) and empty.as_numpy("COORDS").shape == (0, 5)


def _stats(server: Any) -> dict:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    return client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]


def test_concurrent_requests_are_batched_and_split_back(server, events, reference):
    before = _stats(server)
    jobs = [(i, proto) for proto in ("grpc", "http") for i in range(len(events))]
    results: dict[int, Any] = {}
    start = threading.Barrier(len(jobs))

    def send(k: int, i: int, proto: str) -> None:
        module = grpcclient if proto == "grpc" else httpclient
        client = module.InferenceServerClient(f"127.0.0.1:{server.grpc_port if proto == 'grpc' else server.http_port}")
        try:
            start.wait()
            results[k] = client.infer(MODEL, _inputs(module, hits_to_features(events[i].hits)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[k] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(k, i, p)) for k, (i, p) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k, (i, _) in enumerate(jobs):
        assert not isinstance(results[k], Exception), results[k]
        _check(results[k], reference, [i])
    after = _stats(server)  # Triton statistics: inference_count = events, execution_count = calls

    def delta(*keys: str) -> int:
        a, b = after, before
        for k in keys:
            a, b = a.get(k, {}), b.get(k, {})
        return int(a or 0) - int(b or 0)

    assert delta("inference_stats", "success", "count") == len(jobs)
    assert delta("inference_count") == len(jobs)
    assert delta("execution_count") < len(jobs)  # some network calls served several requests
    assert server.repo.get(MODEL).batcher.stats().max_requests_per_batch > 1


def _bad_cases(events: list) -> list[tuple[str, np.ndarray, np.ndarray | None, str, str, tuple[str, ...]]]:
    """(label, features, offsets, datatype, model, words in the message)."""
    good = hits_to_features(events[3].hits)
    nan = good.copy()
    nan[5, 2] = np.nan
    inf = good.copy()
    inf[7, 5] = np.inf
    frac = good.copy()
    frac[1, 4] = 3.5
    return [
        ("shape", good[:, :6].copy(), None, "FP32", MODEL, ("shape [N, 7]", "[%d, 6]" % len(good))),
        ("dtype", good.astype(np.float64), None, "FP64", MODEL, ("must be FP32", "FP64")),
        ("nan", nan, None, "FP32", MODEL, ("column 'y'", "hit 5", "not finite")),
        ("inf", inf, None, "FP32", MODEL, ("column 'time'", "hit 7")),
        ("layer", frac, None, "FP32", MODEL, ("column 'layer' must hold integers",)),
        ("too many hits", np.zeros((MAX_HITS + 1, 7), np.float32), None, "FP32", MODEL,
         (f"{MAX_HITS + 1} hits", f"at most {MAX_HITS}")),
        ("offsets", good, np.array([0, 5, 3, len(good)]), "FP32", MODEL, ("EVENT_OFFSETS", "never decrease")),
        ("offsets end", good, np.array([0, len(good) - 1]), "FP32", MODEL, ("end at N",)),
        ("unknown model", good, None, "FP32", "nope", ("unknown model 'nope'", MODEL)),
    ]


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_bad_requests_get_protocol_errors_and_the_server_keeps_serving(proto, http, grpc, events, reference):
    client, module = (http, httpclient) if proto == "http" else (grpc, grpcclient)
    for label, feats, offsets, dtype, model, words in _bad_cases(events):
        status = ("404" if proto == "http" else "NOT_FOUND") if model == "nope" else \
            ("400" if proto == "http" else "INVALID_ARGUMENT")
        _raises(lambda: client.infer(model, _inputs(module, feats, offsets, dtype=dtype)), status, *words)
    # a missing FEATURES input and an unknown input
    offsets = module.InferInput("EVENT_OFFSETS", [2], "INT64")
    offsets.set_data_from_numpy(np.array([0, 0]))
    status = "400" if proto == "http" else "INVALID_ARGUMENT"
    _raises(lambda: client.infer(MODEL, [offsets]), status, "missing input 'FEATURES'")
    extra = module.InferInput("ENERGY", [1], "FP32")
    extra.set_data_from_numpy(np.ones(1, np.float32))
    _raises(lambda: client.infer(MODEL, _inputs(module, hits_to_features(events[3].hits)) + [extra]),
            status, "unknown input(s) ['ENERGY']")
    _raises(lambda: client.infer(MODEL, _inputs(module, hits_to_features(events[3].hits)),
                                 outputs=[module.InferRequestedOutput("ENERGY")]), status, "unknown output")
    assert client.is_server_ready()
    _check(client.infer(MODEL, _inputs(module, hits_to_features(events[3].hits))), reference, [3])


def test_size_limits_http_body_and_grpc_message(server, grpc, events, reference):
    # a body announced far over the limit is refused from its headers
    conn = HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.putrequest("POST", f"/v2/models/{MODEL}/infer")
    conn.putheader("Content-Length", str(10 * MAX_BODY))
    conn.endheaders()  # no body: the server answers from the headers
    answer = conn.getresponse()
    assert answer.status == 413 and "exceeds the limit" in json.loads(answer.read())["error"]
    conn.close()
    conn = HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.request("POST", f"/v2/models/{MODEL}/infer", body=b"{not json", headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 400 and "not valid JSON" in json.loads(answer.read())["error"]
    conn.request("GET", "/v2/nothing/here")
    answer = conn.getresponse()
    assert answer.status == 404 and "unknown endpoint" in json.loads(answer.read())["error"]
    conn.close()
    big = np.zeros(((MAX_BODY // 28) + 1000, 7), np.float32)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    _raises(lambda: client.infer(MODEL, _inputs(httpclient, big)), "413", "exceeds the limit")
    _check(client.infer(MODEL, _inputs(httpclient, hits_to_features(events[4].hits))), reference, [4])
    _raises(lambda: grpc.infer(MODEL, _inputs(grpcclient, big)), "RESOURCE_EXHAUSTED")
    _check(grpc.infer(MODEL, _inputs(grpcclient, hits_to_features(events[4].hits))), reference, [4])


def test_graceful_shutdown_finishes_in_flight_requests(events, reference):
    srv = _server(max_batch_events=64, max_queue_delay_us=10_000_000)  # requests wait in the queue
    results: dict[str, Any] = {}

    def send(proto: str) -> None:
        module = grpcclient if proto == "grpc" else httpclient
        client = module.InferenceServerClient(f"127.0.0.1:{srv.grpc_port if proto == 'grpc' else srv.http_port}")
        try:
            results[proto] = client.infer(MODEL, _inputs(module, hits_to_features(events[2].hits)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[proto] = exc

    threads = [threading.Thread(target=send, args=(p,)) for p in ("grpc", "http")]
    for t in threads:
        t.start()
    batcher = srv.repo.get(MODEL).batcher
    deadline = time.monotonic() + 20
    while batcher.pending() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.pending() == 2
    t0 = time.perf_counter()
    srv.stop(grace_s=10.0)
    assert time.perf_counter() - t0 < 5.0  # stopping runs the queue instead of waiting 10 s
    for t in threads:
        t.join(10)
    for proto in ("grpc", "http"):
        assert not isinstance(results[proto], Exception), results[proto]
        _check(results[proto], reference, [2])
    assert not srv.ready.is_set()
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}").infer(
            MODEL, _inputs(grpcclient, hits_to_features(events[2].hits)), client_timeout=5)
    with pytest.raises(ConnectionRefusedError):
        httpclient.InferenceServerClient(f"127.0.0.1:{srv.http_port}", connection_timeout=2).is_server_live()


def test_gravnet_is_served_and_matches_in_process(events):
    from caloreco.clustering.model_clustering import ModelClusterer

    sel = events[2:5]
    ref = ModelClusterer.from_checkpoint(None, shipped="gravnet").cluster_events(sel)
    from caloreco.serving.server import InferenceServer

    srv = InferenceServer.from_checkpoint(None, shipped="gravnet", name="gn", http_port=None, grpc_port=0).start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        features, offsets = events_to_request(sel)
        _check(client.infer("gn", _inputs(grpcclient, features, offsets)), ref, [0, 1, 2])
    finally:
        srv.stop(5.0)


def test_energy_head_factor_is_served(events):
    """A network with an energy head serves ENERGY_FACTOR beside the three outputs, equal
    to the in-process factor; the shipped model (no head) does not list it."""
    import torch

    from caloreco.clustering.model_clustering import ModelClusterer
    from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig
    from caloreco.serving.served_model import ServedModel
    from caloreco.serving.server import InferenceServer

    enc = ModelClusterer.from_checkpoint(None).encoding
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig(in_features=enc.n_features, cr=0.125, energy_head=True)).eval()
    clusterer = ModelClusterer(net, enc, t_beta=0.5, t_d=0.7)
    sel = events[2:5]
    ref = clusterer.cluster_events(sel)
    served = ServedModel("with_energy", clusterer)
    assert served.output_names == [*OUTPUTS, "ENERGY_FACTOR"]
    srv = InferenceServer([served], http_port=None, grpc_port=0).start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        meta = client.get_model_metadata("with_energy", as_json=True)
        assert [o["name"] for o in meta["outputs"]][-1] == "ENERGY_FACTOR"
        features, offsets = events_to_request(sel)
        result = client.infer("with_energy", _inputs(grpcclient, features, offsets))
        _check(result, ref, [0, 1, 2])
        factor = result.as_numpy("ENERGY_FACTOR")
        assert factor.dtype == np.float32 and (factor > 0).all()
        np.testing.assert_allclose(factor, np.concatenate([r.energy_factor for r in ref]),
                                   rtol=1e-5, atol=1e-6)
        empty = client.infer("with_energy", _inputs(grpcclient, features[:0], np.zeros(2, np.int64)))
        assert empty.as_numpy("ENERGY_FACTOR").shape == (0,)
    finally:
        srv.stop(5.0)


def test_signal_head_probability_is_served(events):
    """A network with a signal head serves SIGNAL beside the three outputs, equal to the
    in-process probability, and its t_signal is in the model configuration."""
    import torch

    from caloreco.clustering.model_clustering import ModelClusterer
    from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig
    from caloreco.serving.served_model import ServedModel
    from caloreco.serving.server import InferenceServer

    enc = ModelClusterer.from_checkpoint(None).encoding
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig(in_features=enc.n_features, cr=0.125, signal_head=True)).eval()
    clusterer = ModelClusterer(net, enc, t_beta=0.5, t_d=0.3, attach_r=4.0, attach_passes=2,
                               t_signal=0.55)
    sel = events[2:5]
    ref = clusterer.cluster_events(sel)
    served = ServedModel("with_signal", clusterer)
    assert served.output_names == [*OUTPUTS, "SIGNAL"]
    assert served.config()["parameters"]["t_signal"] == {"string_value": "0.55"}
    srv = InferenceServer([served], http_port=None, grpc_port=0).start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        features, offsets = events_to_request(sel)
        result = client.infer("with_signal", _inputs(grpcclient, features, offsets))
        _check(result, ref, [0, 1, 2])
        signal = result.as_numpy("SIGNAL")
        assert signal.dtype == np.float32 and ((signal > 0) & (signal < 1)).all()
        np.testing.assert_allclose(signal, np.concatenate([r.signal for r in ref]),
                                   rtol=1e-5, atol=1e-6)
        empty = client.infer("with_signal", _inputs(grpcclient, features[:0], np.zeros(2, np.int64)))
        assert empty.as_numpy("SIGNAL").shape == (0,)
    finally:
        srv.stop(5.0)


def test_cli_serve_prints_ports_and_stops_on_sigterm(events, reference):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "caloreco", "serve", "--http-port", "0", "--grpc-port", "0",
                             "--max-queue-delay-us", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    watchdog = threading.Timer(90, proc.kill)  # a hung server fails the test instead of blocking it
    watchdog.start()
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, "server exited early: " + proc.stderr.read()
            lines.append(line)
            m = re.search(r"HTTP on 127\.0\.0\.1:(\d+), gRPC on 127\.0\.0\.1:(\d+)", line)
            if m:
                break
        http_port, grpc_port = int(m.group(1)), int(m.group(2))
        assert "caloreco_spvcnn" in lines[0] and "SPVCNN" in lines[0]
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        _check(client.infer(MODEL, _inputs(httpclient, hits_to_features(events[3].hits))), reference, [3])
        assert grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").is_server_ready()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after signal" in out

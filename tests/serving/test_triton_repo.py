"""caloreco export --triton-repo: the configs parse as Triton's ModelConfig, the ONNX network
checks and runs in onnxruntime, and the ensemble (pre-processing model.py -> network ->
post-processing model.py, run here with a minimal triton_python_backend_utils) gives the
cluster ids of ModelClusterer on dtau events."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from caloreco.__main__ import entry
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.parquet import read_events
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.serving.protocol import events_to_request
from caloreco.serving.triton_repo import RAW_HIT_COLUMNS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

MODELS = ("caloreco", "caloreco_preprocess", "caloreco_network", "caloreco_postprocess")


# ------------------------------------------------- a minimal triton_python_backend_utils
class _Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def to_dlpack(self) -> Any:
        return torch.from_numpy(np.ascontiguousarray(self._array))

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> "_Tensor":
        return cls(name, torch.from_dlpack(capsule).numpy())


class _TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class _Request:
    def __init__(self, inputs: list[_Tensor]) -> None:
        self._inputs = {t.name(): t for t in inputs}


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: _TritonError | None = None) -> None:
        self._outputs, self._error = list(output_tensors), error

    def output_tensors(self) -> list[_Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> _TritonError | None:
        return self._error


def _fake_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor
    mod.TritonError = _TritonError
    mod.InferenceRequest = _Request
    mod.InferenceResponse = _Response
    mod.get_input_tensor_by_name = lambda request, name: request._inputs.get(name)
    mod.get_output_tensor_by_name = lambda response, name: next(
        (t for t in response.output_tensors() if t.name() == name), None)
    return mod


# ------------------------------------------------------------------------ helpers
def _config(repo: Path, model: str) -> Any:
    """The model's config.pbtxt parsed exactly as Triton does (protobuf text format)."""
    return text_format.Parse((repo / model / "config.pbtxt").read_text(),
                             model_config_pb2.ModelConfig())


def _python_model(repo: Path, model: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    path = repo / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"_triton_{repo.name}_{model}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = module.TritonPythonModel()
    config = json_format.MessageToDict(_config(repo, model), preserving_proto_field_name=True)
    instance.initialize({"model_config": json.dumps(config), "model_name": model,
                         "model_version": "1", "model_repository": str(repo / model)})
    return instance


def _python_runner(repo: Path, model: str, monkeypatch: pytest.MonkeyPatch
                   ) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    instance = _python_model(repo, model, monkeypatch)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        [response] = instance.execute([_Request([_Tensor(k, v) for k, v in inputs.items()])])
        assert not response.has_error(), response.error().message()
        return {t.name(): t.as_numpy() for t in response.output_tensors()}

    return run


def _network_runner(repo: Path) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    cfg = _config(repo, "caloreco_network")
    if cfg.platform == "onnxruntime_onnx":
        options = ort.SessionOptions()  # as Triton's onnxruntime backend reads the config
        options.intra_op_num_threads = int(cfg.parameters["intra_op_thread_count"].string_value)
        sess = ort.InferenceSession(str(repo / "caloreco_network" / "1" / "model.onnx"),
                                    options, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return lambda inputs: dict(zip(names, sess.run(names, inputs)))
    module = torch.jit.load(str(repo / "caloreco_network" / "1" / "model.pt"))

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # NAMED_INDEX: name__i
        args = sorted(inputs.items(), key=lambda kv: int(kv[0].rsplit("__", 1)[1]))
        with torch.no_grad():
            outs = module(*(torch.from_numpy(v) for _, v in args))
        return {o.name: outs[int(o.name.rsplit("__", 1)[1])].numpy() for o in cfg.output}

    return run


def _run_ensemble(repo: Path, inputs: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
                  ) -> dict[str, np.ndarray]:
    """Execute the ensemble's steps as Triton's ensemble scheduler does (by tensor names)."""
    ens = _config(repo, "caloreco")
    runners = {"caloreco_preprocess": _python_runner(repo, "caloreco_preprocess", monkeypatch),
               "caloreco_network": _network_runner(repo),
               "caloreco_postprocess": _python_runner(repo, "caloreco_postprocess", monkeypatch)}
    tensors = dict(inputs)
    for step in ens.ensemble_scheduling.step:
        feed = {k: tensors[v] for k, v in step.input_map.items() if v in tensors}
        out = runners[step.model_name](feed)
        for k, v in step.output_map.items():
            tensors[v] = out[k]
    return {o.name: tensors[o.name] for o in ens.output}


# ----------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def onnx_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("triton") / "repo"
    assert entry(["export", "--format", "onnx", "--triton-repo", str(repo)]) == 0
    return repo


@pytest.fixture(scope="module")
def ts_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("triton-ts") / "repo"
    assert entry(["export", "--format", "torchscript", "--triton-repo", str(repo)]) == 0
    return repo


@pytest.fixture(scope="module")
def dtau_events(dtau_dataset: Path) -> list:
    return read_events(sorted(dtau_dataset.glob("*.parquet"))[0])


# -------------------------------------------------------------------------- tests
@pytest.mark.parametrize("which", ["onnx_repo", "ts_repo"])
def test_configs_parse_as_triton_model_configs(which, request):
    repo = request.getfixturevalue(which)
    assert sorted(p.name for p in repo.iterdir()) == sorted(MODELS)
    cfg = {m: _config(repo, m) for m in MODELS}
    for c in cfg.values():
        assert c.max_batch_size == 0 and not c.HasField("dynamic_batching")
        for t in [*c.input, *c.output]:
            assert t.dims[0] == -1  # every size dynamic
    ens, pre, net, post = (cfg[m] for m in MODELS)
    assert ens.platform == "ensemble" and (repo / "caloreco" / "1").is_dir()
    assert pre.backend == post.backend == "python"
    assert net.platform == ("onnxruntime_onnx" if which == "onnx_repo" else "pytorch_libtorch")
    assert [(i.name, i.optional) for i in ens.input] == [("FEATURES", False),
                                                         ("EVENT_OFFSETS", True)]
    assert list(ens.input[0].dims) == [-1, len(RAW_HIT_COLUMNS)] == [-1, 7]  # as caloreco serve
    # the shipped model has a signal head: its per-hit probability is an output too
    assert [o.name for o in ens.output] == ["CLUSTER_ID", "BETA", "COORDS", "SIGNAL"]
    assert net.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO
    # the steps are wired: every step input is an ensemble input or an earlier step's output,
    # with the same data type and dims on both sides
    produced = {i.name: i for i in ens.input}
    for step in ens.ensemble_scheduling.step:
        model = cfg[step.model_name]
        declared = {i.name: i for i in model.input}
        assert set(step.input_map) == set(declared)
        for key, value in step.input_map.items():
            assert value in produced, (step.model_name, value)
            src, dst = produced[value], declared[key]
            assert (src.data_type, list(src.dims)) == (dst.data_type, list(dst.dims)), key
        outs = {o.name: o for o in model.output}
        assert set(step.output_map) <= set(outs)
        produced.update({v: outs[k] for k, v in step.output_map.items()})
    for o in ens.output:
        assert (produced[o.name].data_type, list(produced[o.name].dims)) == (o.data_type,
                                                                              list(o.dims))
    assert {"t_beta", "t_d", "t_signal"} <= set(post.parameters)


def test_onnx_network_checks_and_matches_its_config(onnx_repo):
    path = onnx_repo / "caloreco_network" / "1" / "model.onnx"
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path)).graph
    cfg = _config(onnx_repo, "caloreco_network")
    for declared, actual in ((cfg.input, graph.input), (cfg.output, graph.output)):
        assert [t.name for t in declared] == [t.name for t in actual]
        for t, a in zip(declared, actual):
            shape = [d.dim_value if d.HasField("dim_value") else -1
                     for d in a.type.tensor_type.shape.dim]
            assert list(t.dims) == shape, t.name


@pytest.mark.parametrize("which", ["onnx_repo", "ts_repo"])
def test_ensemble_equals_model_clusterer_on_dtau_events(which, request, dtau_events, monkeypatch):
    repo = request.getfixturevalue(which)
    clusterer = ModelClusterer.from_checkpoint()
    events = dtau_events[:2]
    raw, offsets = events_to_request(events)
    out = _run_ensemble(repo, {"FEATURES": raw, "EVENT_OFFSETS": offsets}, monkeypatch)
    ref = clusterer.cluster_events(events, batch_size=2)  # one network call, as the request
    for b, pred in enumerate(ref):
        sl = slice(offsets[b], offsets[b + 1])
        np.testing.assert_array_equal(out["CLUSTER_ID"][sl], pred.cluster_id)
        np.testing.assert_allclose(out["BETA"][sl], pred.beta, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["COORDS"][sl], pred.coords, rtol=1e-4, atol=1e-4)
    assert out["CLUSTER_ID"].dtype == np.int64 and out["BETA"].dtype == np.float32
    assert (out["CLUSTER_ID"] >= 0).any()

    # one event without EVENT_OFFSETS (the optional input left out)
    one = _run_ensemble(repo, {"FEATURES": raw[:offsets[1]]}, monkeypatch)
    [pred] = clusterer.cluster_events(events[:1])
    np.testing.assert_array_equal(one["CLUSTER_ID"], pred.cluster_id)
    # unknown cell types (-1): as hits without the cell-type column
    hits = {c: events[0].hits[c] for c in RAW_HIT_COLUMNS[:6]}
    enc = clusterer.encoding
    det = {k: torch.from_numpy(v) for k, v in clusterer.detector_inputs(hits).items()}
    cid, _, _ = clusterer.predict_tensors(torch.from_numpy(enc.features(hits)),
                                          torch.from_numpy(enc.points(hits)),
                                          torch.zeros(events[0].n_hits, dtype=torch.long),
                                          det.get("positions"), det.get("xyz"))
    unknown = raw[:offsets[1]].copy()
    unknown[:, 6] = -1
    np.testing.assert_array_equal(
        _run_ensemble(repo, {"FEATURES": unknown}, monkeypatch)["CLUSTER_ID"], cid.numpy())


def test_preprocess_reports_bad_requests_as_errors(ts_repo, monkeypatch):
    model = _python_model(ts_repo, "caloreco_preprocess", monkeypatch)
    good = np.zeros((3, 7), np.float32)
    half_layer = good.copy()
    half_layer[1, 4] = 2.5
    bad = [_Request([_Tensor("FEATURES", good), _Tensor("EVENT_OFFSETS", np.array([0, 5]))]),
           _Request([_Tensor("FEATURES", np.zeros((3, 6), np.float32))]),
           _Request([_Tensor("FEATURES", np.zeros((0, 7), np.float32))]),
           _Request([_Tensor("FEATURES", half_layer)])]
    responses = model.execute(bad)
    assert [r.has_error() for r in responses] == [True, True, True, True]
    messages = [r.error().message() for r in responses]
    assert "EVENT_OFFSETS must rise from 0 to the number of hits (3)" in messages[0]
    assert "FEATURES must have shape [N, 7]" in messages[1]
    assert "no hits" in messages[2]
    assert "column 'layer' must be a finite integer, got 2.5 at hit 1" in messages[3]


def test_repository_is_replaced_only_with_force(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "old.txt").write_text("keep me")
    args = ["export", "--format", "torchscript", "--triton-repo", str(repo)]
    assert entry(args) == 2
    assert "exists and is not empty; give --force" in capsys.readouterr().err
    assert (repo / "old.txt").read_text() == "keep me"
    assert entry([*args, "--force"]) == 0
    assert sorted(p.name for p in repo.iterdir()) == sorted(MODELS)
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary directory left
    assert entry(["export", "--format", "onnx"]) == 2
    assert "--out FILE" in capsys.readouterr().err


def test_postprocess_assign_rule_from_parameters(onnx_repo):
    from caloreco.clustering.condensation import condensation_clustering
    from caloreco.serving.triton_repo import Postprocessor

    text = (onnx_repo / "caloreco_postprocess" / "config.pbtxt").read_text()
    shipped = ModelClusterer.from_checkpoint()
    assert f'string_value: "{shipped.assign}"' in text  # the checkpoint's rule is exported
    g = torch.Generator().manual_seed(0)
    coords, beta = torch.rand(200, 3, generator=g) * 2, torch.rand(200, generator=g)
    hit_event = np.repeat([0, 1], 100)
    for assign in ("first", "nearest"):
        post = Postprocessor.from_parameters({"t_beta": "0.5", "t_d": "0.6", "assign": assign})
        ref = condensation_clustering(beta, coords, torch.from_numpy(hit_event), t_beta=0.5,
                                      t_d=0.6, assign=assign)
        np.testing.assert_array_equal(post(coords.numpy(), beta.numpy(), hit_event)["CLUSTER_ID"],
                                      ref.numpy())
    # a repository exported before the rule existed has no "assign": the original rule
    assert Postprocessor.from_parameters({"t_beta": "0.5", "t_d": "0.6"}).assign == "first"
    with pytest.raises(ConfigError, match="assign must be one of"):
        Postprocessor(0.5, 0.6, "closest")


def test_postprocess_locality_cut_from_parameters(onnx_repo):
    from caloreco.clustering.condensation import condensation_clustering
    from caloreco.serving.triton_repo import HIT_POSITION, Postprocessor

    text = (onnx_repo / "caloreco_postprocess" / "config.pbtxt").read_text()
    assert 'key: "r_max"' in text and HIT_POSITION in text
    pre = (onnx_repo / "caloreco_preprocess" / "config.pbtxt").read_text()
    assert HIT_POSITION in pre  # the pre-processing sends the positions along
    g = torch.Generator().manual_seed(1)
    coords, beta = torch.rand(200, 3, generator=g) * 2, torch.rand(200, generator=g)
    pos = torch.rand(200, 3, generator=g) * 30
    hit_event = np.repeat([0, 1], 100)
    post = Postprocessor.from_parameters({"t_beta": "0.5", "t_d": "0.9", "assign": "nearest",
                                          "r_max": "8.0"})
    assert post.r_max == 8.0
    ref = condensation_clustering(beta, coords, torch.from_numpy(hit_event), t_beta=0.5,
                                  t_d=0.9, assign="nearest", positions=pos, r_max=8.0)
    got = post(coords.numpy(), beta.numpy(), hit_event, pos.numpy())["CLUSTER_ID"]
    np.testing.assert_array_equal(got, ref.numpy())
    plain = Postprocessor.from_parameters({"t_beta": "0.5", "t_d": "0.9", "assign": "nearest",
                                           "r_max": "none"})
    assert plain.r_max is None and (plain(coords.numpy(), beta.numpy(), hit_event,
                                          pos.numpy())["CLUSTER_ID"] != got).any()
    with pytest.raises(InvalidDataError, match="needs the 'hit_position' input"):
        post(coords.numpy(), beta.numpy(), hit_event)
    with pytest.raises(ConfigError, match="r_max must be a finite number > 0"):
        Postprocessor(0.5, 0.6, "first", -2.0)


def test_postprocess_detector_term_from_parameters(onnx_repo):
    from caloreco.clustering.model_clustering import condense_outputs
    from caloreco.serving.triton_repo import Postprocessor

    text = (onnx_repo / "caloreco_postprocess" / "config.pbtxt").read_text()
    assert 'key: "position_scale"' in text
    g = torch.Generator().manual_seed(2)
    coords, beta = torch.rand(200, 3, generator=g) * 2, torch.rand(200, generator=g)
    pos = torch.rand(200, 3, generator=g) * 30
    hit_event = np.repeat([0, 1], 100)
    params = {"t_beta": "0.5", "t_d": "0.9", "assign": "nearest", "r_max": "12.0"}
    post = Postprocessor.from_parameters({**params, "position_scale": "10.0"})
    assert post.position_scale == 10.0
    ref = condense_outputs(beta, coords, torch.from_numpy(hit_event), t_beta=0.5, t_d=0.9,
                           assign="nearest", r_max=12.0, positions=pos, position_scale=10.0)
    got = post(coords.numpy(), beta.numpy(), hit_event, pos.numpy())["CLUSTER_ID"]
    np.testing.assert_array_equal(got, ref.numpy())
    plain = Postprocessor.from_parameters({**params, "position_scale": "none"})
    assert plain.position_scale is None
    assert (plain(coords.numpy(), beta.numpy(), hit_event, pos.numpy())["CLUSTER_ID"]
            != got).any()
    only_term = Postprocessor.from_parameters({**params, "r_max": "none",
                                               "position_scale": "10.0"})
    with pytest.raises(InvalidDataError, match="detector term .* needs the 'hit_position'"):
        only_term(coords.numpy(), beta.numpy(), hit_event)
    with pytest.raises(ConfigError, match="position_scale must be a finite number > 0"):
        Postprocessor(0.5, 0.6, "first", None, None, 1, 0.0)


def test_energy_head_factor_flows_through_the_ensemble(tmp_path, dtau_events, monkeypatch):
    """A network with an energy head: the ONNX graph has a third output, the ensemble
    returns ENERGY_FACTOR equal to in-process clustering's factor; the Python-backend
    network runner returns it too."""
    from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig
    from caloreco.serving.triton_repo import NetworkRunner, build_triton_repo, config_parameters
    from caloreco.training.checkpoint import Checkpoint, save_checkpoint

    enc = ModelClusterer.from_checkpoint().encoding
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig(in_features=enc.n_features, cr=0.125, energy_head=True))
    ckpt = tmp_path / "energy.pt"
    save_checkpoint(Checkpoint("spvcnn", net.config.to_dict(), enc.to_dict(), net.state_dict(),
                               clustering={"t_beta": 0.5, "t_d": 0.7}), ckpt)
    repo = build_triton_repo(ckpt, tmp_path / "repo", fmt="onnx")
    graph = onnx.load(str(repo / "caloreco_network" / "1" / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["coords", "beta", "energy_factor"]
    assert [o.name for o in _config(repo, "caloreco").output][-1] == "ENERGY_FACTOR"
    events = dtau_events[:2]
    raw, offsets = events_to_request(events)
    out = _run_ensemble(repo, {"FEATURES": raw, "EVENT_OFFSETS": offsets}, monkeypatch)
    ref = ModelClusterer.from_checkpoint(ckpt).cluster_events(events, batch_size=2)
    np.testing.assert_array_equal(out["CLUSTER_ID"], np.concatenate([p.cluster_id for p in ref]))
    assert out["ENERGY_FACTOR"].dtype == np.float32
    np.testing.assert_allclose(out["ENERGY_FACTOR"], np.concatenate([p.energy_factor for p in ref]),
                               rtol=1e-4, atol=1e-5)

    py = build_triton_repo(ckpt, tmp_path / "py", fmt="torchscript", network_backend="python")
    runner = NetworkRunner.from_parameters(
        config_parameters(json_format.MessageToDict(_config(py, "caloreco_network"),
                                                 preserving_proto_field_name=True)),
        py / "caloreco_network" / "1")
    assert runner.output_names == ["coords", "beta", "energy_factor"]
    pre = _python_runner(py, "caloreco_preprocess", monkeypatch)({"FEATURES": raw[:offsets[1]]})
    result = runner([pre[name] for name in runner.input_names])
    np.testing.assert_allclose(result["energy_factor"], ref[0].energy_factor, rtol=1e-4, atol=1e-5)


def test_signal_head_gates_the_attachment_through_the_ensemble(tmp_path, dtau_events,
                                                               monkeypatch):
    """A network with a signal head and t_signal in its clustering record: the ONNX graph
    outputs ``signal``, the post-processing reads t_signal from its config parameters, and
    the ensemble's CLUSTER_ID and SIGNAL equal in-process clustering's."""
    from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig
    from caloreco.serving.triton_repo import Postprocessor, build_triton_repo, config_parameters
    from caloreco.training.checkpoint import Checkpoint, save_checkpoint

    enc = ModelClusterer.from_checkpoint().encoding
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig(in_features=enc.n_features, cr=0.125, signal_head=True))
    ckpt = tmp_path / "signal.pt"
    record = {"t_beta": 0.5, "t_d": 0.3, "assign": "nearest", "attach_r": 4.0,
              "attach_passes": 2, "t_signal": 0.55}
    save_checkpoint(Checkpoint("spvcnn", net.config.to_dict(), enc.to_dict(), net.state_dict(),
                               clustering=record), ckpt)
    repo = build_triton_repo(ckpt, tmp_path / "repo", fmt="onnx")
    graph = onnx.load(str(repo / "caloreco_network" / "1" / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["coords", "beta", "signal"]
    assert [o.name for o in _config(repo, "caloreco").output][-1] == "SIGNAL"
    params = config_parameters(json_format.MessageToDict(
        _config(repo, "caloreco_postprocess"), preserving_proto_field_name=True))
    assert float(params["t_signal"]) == 0.55
    events = dtau_events[:2]
    raw, offsets = events_to_request(events)
    out = _run_ensemble(repo, {"FEATURES": raw, "EVENT_OFFSETS": offsets}, monkeypatch)
    clusterer = ModelClusterer.from_checkpoint(ckpt)
    assert clusterer.t_signal == 0.55
    ref = clusterer.cluster_events(events, batch_size=2)
    np.testing.assert_array_equal(out["CLUSTER_ID"], np.concatenate([p.cluster_id for p in ref]))
    np.testing.assert_allclose(out["SIGNAL"], np.concatenate([p.signal for p in ref]),
                               rtol=1e-4, atol=1e-5)
    everyone = ModelClusterer.from_checkpoint(ckpt, t_signal=0.0).cluster_events(events)
    assert not np.array_equal(out["CLUSTER_ID"], np.concatenate([p.cluster_id for p in everyone]))
    post = Postprocessor.from_parameters(params)
    with pytest.raises(InvalidDataError, match="needs the network's 'signal' output"):
        post(np.zeros((2, 5), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int64),
             hit_xyz=np.zeros((2, 3), np.float32))

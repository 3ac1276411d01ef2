"""ModelClusterer's locality cut, detector term and attachment: stored in checkpoints,
applied alike by every path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from caloreco.batch.cluster_job import ClusterJob
from caloreco.clustering.condensation import condensation_clustering
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.dataset import _shard_paths
from caloreco.data.parquet import read_events
from caloreco.errors import ConfigError
from caloreco.evaluation.methods import CondensationMethod
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model
from caloreco.training.checkpoint import Checkpoint, save_checkpoint

#: A wide cluster radius: the untrained network's clustering space holds each event in a
#: few clusters, so the locality cut (10 cm at the front face) visibly splits them.
T_BETA, T_D, R_MAX = 0.3, 3.0, 10.0


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    enc = HitEncoding()
    model = build_model("spvcnn", {"in_features": enc.n_features, "cr": 0.125})
    path = save_checkpoint(Checkpoint("spvcnn", model.config.to_dict(), enc.to_dict(),
                                      model.state_dict(),
                                      clustering={"t_beta": T_BETA, "t_d": T_D,
                                                  "assign": "nearest", "r_max": R_MAX}),
                           tmp_path_factory.mktemp("ckpt") / "m.pt")
    return path, model


@pytest.fixture(scope="module")
def events(dtau_dataset: Path) -> list:
    return read_events(_shard_paths(dtau_dataset)[0])[:2]


def test_cut_from_the_checkpoint_equals_condensation_with_positions(untrained, events) -> None:
    path, _ = untrained
    c = ModelClusterer.from_checkpoint(path)
    assert (c.t_beta, c.t_d, c.assign, c.r_max) == (T_BETA, T_D, "nearest", R_MAX)
    assert c.clustering_record() == {"t_beta": T_BETA, "t_d": T_D, "assign": "nearest",
                                     "r_max": R_MAX, "attach_r": None, "attach_passes": 1,
                                     "position_scale": None, "t_signal": None}
    preds = c.cluster_events(events, batch_size=2)
    plain = ModelClusterer.from_checkpoint(path, r_max=math.inf)  # inf: the cut switched off
    assert plain.r_max is None
    n_cut = n_plain = 0
    for e, p in zip(events, preds):
        pos = torch.from_numpy(HitEncoding().projected_positions(e.hits))
        ref = condensation_clustering(torch.from_numpy(p.beta), torch.from_numpy(p.coords),
                                      t_beta=T_BETA, t_d=T_D, assign="nearest",
                                      positions=pos, r_max=R_MAX)
        np.testing.assert_array_equal(p.cluster_id, ref.numpy())
        n_cut += len(np.unique(p.cluster_id[p.cluster_id >= 0]))
    for p in plain.cluster_events(events):
        n_plain += len(np.unique(p.cluster_id[p.cluster_id >= 0]))
    assert n_cut > n_plain  # the cut splits clusters that are far apart in the detector


def test_rescan_applies_the_cut(untrained, events) -> None:
    path, _ = untrained
    method = CondensationMethod("net", ModelClusterer.from_checkpoint(path))
    pred = method.cluster(events)
    again = method.rescan(T_BETA, T_D)
    for a, b in zip(pred, again):
        np.testing.assert_array_equal(a, b)
    assert method.details()["r_max"] == R_MAX


def test_predict_tensors_needs_positions_with_a_cut(untrained, events) -> None:
    path, _ = untrained
    c = ModelClusterer.from_checkpoint(path)
    enc = c.encoding
    hits = events[0].hits
    args = (torch.from_numpy(enc.features(hits)), torch.from_numpy(enc.points(hits)),
            torch.zeros(events[0].n_hits, dtype=torch.int64))
    with pytest.raises(ConfigError, match="needs the hits' projected positions"):
        c.predict_tensors(*args)
    with pytest.raises(ConfigError, match="r_max must be a finite number > 0"):
        ModelClusterer.from_checkpoint(path, r_max=0.0)


def test_cluster_job_records_and_applies_the_cut(untrained, events, tmp_path) -> None:
    path, _ = untrained
    job = ClusterJob.create(tmp_path / "a", path)
    off = ClusterJob.create(tmp_path / "b", path, r_max=math.inf)
    assert job.r_max == R_MAX and off.r_max is None
    assert job.identity(Path("x"))["r_max"] == R_MAX and off.identity(Path("x"))["r_max"] is None
    with job._clusterer() as c:
        assert c.r_max == R_MAX
    with off._clusterer() as c:
        assert c.r_max is None


def test_attachment_equals_condensation_then_attach(untrained, events) -> None:
    from caloreco.clustering.attach import attach_leftovers
    from caloreco.clustering.model_clustering import hit_xyz

    path, _ = untrained
    c = ModelClusterer.from_checkpoint(path, attach_r=4.0, attach_passes=2)
    assert c.clustering_record()["attach_r"] == 4.0
    preds = c.cluster_events(events, batch_size=2)
    plain = ModelClusterer.from_checkpoint(path).cluster_events(events, batch_size=2)
    gained = 0
    for e, p, q in zip(events, preds, plain):
        ref = attach_leftovers(torch.from_numpy(q.cluster_id), torch.from_numpy(hit_xyz(e.hits)),
                               None, radius=4.0, passes=2)
        np.testing.assert_array_equal(p.cluster_id, ref.numpy())
        gained += int((p.cluster_id >= 0).sum() - (q.cluster_id >= 0).sum())
    assert gained > 0
    # the rescan keeps the attachment; inf switches a recorded attachment off
    method = CondensationMethod("net", c)
    for a, b in zip(method.cluster(events), method.rescan(T_BETA, T_D)):
        np.testing.assert_array_equal(a, b)
    assert method.details()["attach_r"] == 4.0
    assert ModelClusterer.from_checkpoint(path, attach_r=math.inf).attach_r is None
    with pytest.raises(ConfigError, match="x, y, z"):
        c.condense(torch.from_numpy(preds[0].beta), torch.from_numpy(preds[0].coords), None,
                   torch.from_numpy(HitEncoding().projected_positions(events[0].hits)))


def test_detector_term_by_hand() -> None:
    """Two hits at the same clustering coordinates but 30 cm apart in the detector: one
    cluster without the detector term, two with it (30 cm / 10 cm = 3 units > t_d)."""
    from caloreco.clustering.model_clustering import condense_outputs

    beta = torch.tensor([0.9, 0.8, 0.1])
    coords = torch.zeros(3, 2)
    pos = torch.tensor([[0.0, 0.0, 320.0], [30.0, 0.0, 320.0], [1.0, 0.0, 320.0]])
    kw = {"t_beta": 0.5, "t_d": 0.7, "assign": "nearest", "positions": pos}
    assert condense_outputs(beta, coords, None, **kw).tolist() == [0, 0, 0]
    assert condense_outputs(beta, coords, None, **kw, position_scale=10.0).tolist() == [0, 1, 0]
    with pytest.raises(ConfigError, match="projected positions"):
        condense_outputs(beta, coords, None, t_beta=0.5, t_d=0.7, position_scale=10.0)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="position_scale must be a finite number > 0"):
            condense_outputs(beta, coords, None, **kw, position_scale=bad)


def test_detector_term_equals_condensation_in_extended_coordinates(untrained, events,
                                                                    tmp_path) -> None:
    path, _ = untrained
    scale = 5.0
    c = ModelClusterer.from_checkpoint(path, r_max=math.inf, position_scale=scale)
    assert c.r_max is None and c.clustering_record()["position_scale"] == scale
    assert ModelClusterer.from_checkpoint(path, position_scale=math.inf).position_scale is None
    preds = c.cluster_events(events, batch_size=2)
    plain = ModelClusterer.from_checkpoint(path, r_max=math.inf).cluster_events(events)
    differ = 0
    for e, p, q in zip(events, preds, plain):
        pos = torch.from_numpy(HitEncoding().projected_positions(e.hits))
        ref = condensation_clustering(torch.from_numpy(p.beta),
                                      torch.cat([torch.from_numpy(p.coords), pos / scale], 1),
                                      t_beta=T_BETA, t_d=T_D, assign="nearest")
        np.testing.assert_array_equal(p.cluster_id, ref.numpy())
        differ += int((p.cluster_id != q.cluster_id).sum())
    assert differ > 0  # the term changes the clustering of the untrained network
    # the rescan keeps it; the batch job records it and applies it
    method = CondensationMethod("net", c)
    for a, b in zip(method.cluster(events), method.rescan(T_BETA, T_D)):
        np.testing.assert_array_equal(a, b)
    assert method.details()["position_scale"] == scale
    job = ClusterJob.create(tmp_path / "a", path, position_scale=scale)
    assert job.identity(Path("x"))["position_scale"] == scale
    assert ClusterJob.create(tmp_path / "b", path).identity(Path("x"))["position_scale"] is None
    with job._clusterer() as jc:
        assert jc.position_scale == scale
    with pytest.raises(ConfigError, match="detector term"):
        c.predict_tensors(torch.from_numpy(c.encoding.features(events[0].hits)),
                          torch.from_numpy(c.encoding.points(events[0].hits)),
                          torch.zeros(events[0].n_hits, dtype=torch.int64))


@pytest.fixture(scope="module")
def with_signal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained network with a signal head and an attachment in its record."""
    torch.manual_seed(3)
    enc = HitEncoding()
    model = build_model("spvcnn", {"in_features": enc.n_features, "cr": 0.125,
                                   "signal_head": True})
    return save_checkpoint(Checkpoint("spvcnn", model.config.to_dict(), enc.to_dict(),
                                      model.state_dict(),
                                      clustering={"t_beta": T_BETA, "t_d": T_D,
                                                  "assign": "nearest", "r_max": R_MAX,
                                                  "attach_r": 4.0, "attach_passes": 2}),
                           tmp_path_factory.mktemp("sig") / "s.pt")


def test_signal_threshold_gates_the_attachment(with_signal, untrained, events, tmp_path) -> None:
    """t_signal: condensation, then the attachment of the left-over hits whose signal
    probability reaches it: every path (cluster_events, rescan, batch job) alike."""
    from caloreco.clustering.attach import attach_leftovers
    from caloreco.clustering.model_clustering import condense_outputs, hit_xyz

    td = 0.3  # a small radius: condensation of the untrained network leaves hits over
    everyone = ModelClusterer.from_checkpoint(with_signal, t_d=td)
    assert everyone.t_signal is None and everyone.has_signal_head
    base = everyone.cluster_events(events, batch_size=2)
    left = [p.signal[p.cluster_id < 0] for p in ModelClusterer.from_checkpoint(
        with_signal, t_d=td, attach_r=math.inf).cluster_events(events)]
    # the median signal of the left-over hits: the gate holds half of them back
    t_signal = float(np.median(np.concatenate(left)))
    c = ModelClusterer.from_checkpoint(with_signal, t_d=td, t_signal=t_signal)
    assert c.clustering_record()["t_signal"] == t_signal
    preds = c.cluster_events(events, batch_size=2)
    held_back = 0
    for e, p, q in zip(events, preds, base):
        np.testing.assert_array_equal(p.signal, q.signal)  # same network outputs
        assert p.signal.dtype == np.float32 and ((p.signal > 0) & (p.signal < 1)).all()
        pos = torch.from_numpy(HitEncoding().projected_positions(e.hits))
        plain = condense_outputs(torch.from_numpy(p.beta), torch.from_numpy(p.coords), None,
                                 t_beta=T_BETA, t_d=td, assign="nearest", r_max=R_MAX,
                                 positions=pos)
        cand = torch.from_numpy(p.signal) >= t_signal
        ref = attach_leftovers(plain, torch.from_numpy(hit_xyz(e.hits)), None, radius=4.0,
                               passes=2, candidates=cand)
        np.testing.assert_array_equal(p.cluster_id, ref.numpy())
        grown = (p.cluster_id >= 0) & (plain.numpy() < 0)
        assert not (grown & ~cand.numpy()).any()
        held_back += int(((q.cluster_id >= 0) & (p.cluster_id < 0)).sum())
    assert held_back > 0  # the gate kept hits that the plain attachment takes
    # t_signal 0 attaches every left-over hit, as no threshold
    for a, b in zip(ModelClusterer.from_checkpoint(with_signal, t_d=td, t_signal=0.0)
                    .cluster_events(events), base):
        np.testing.assert_array_equal(a.cluster_id, b.cluster_id)
    method = CondensationMethod("net", c)
    for a, b in zip(method.cluster(events), method.rescan(T_BETA, td)):
        np.testing.assert_array_equal(a, b)
    assert method.details()["t_signal"] == t_signal
    job = ClusterJob.create(tmp_path / "a", with_signal, t_signal=t_signal)
    assert job.identity(Path("x"))["t_signal"] == t_signal
    with job._clusterer() as jc:
        assert jc.t_signal == t_signal
    with pytest.raises(ConfigError, match="needs the network's signal output"):
        c.condense(torch.from_numpy(preds[0].beta), torch.from_numpy(preds[0].coords), None,
                   torch.from_numpy(HitEncoding().projected_positions(events[0].hits)),
                   torch.from_numpy(hit_xyz(events[0].hits)))
    with pytest.raises(ConfigError, match="needs a network with a signal head"):
        ModelClusterer.from_checkpoint(untrained[0], t_signal=0.5)
    # 0 gates nothing: stored as none, and accepted without a signal head, as a batch job
    # loading a model in another process asks for it
    assert ModelClusterer.from_checkpoint(with_signal, t_signal=0.0).t_signal is None
    plain_job = ClusterJob.create(tmp_path / "p", untrained[0])
    assert plain_job.t_signal is None and plain_job._load().t_signal is None
    assert job._load().t_signal == t_signal
    with pytest.raises(ConfigError, match="t_signal must be a probability"):
        ModelClusterer.from_checkpoint(with_signal, t_signal=-0.1)


def test_stage_arrays_concatenates_for_the_device():
    import numpy as np
    import torch

    from caloreco.clustering.model_clustering import stage_arrays

    parts = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((0, 2), np.float32),
             np.full((2, 2), 7, np.float32)]
    got = stage_arrays(parts, torch.device("cpu"))
    assert got.dtype == torch.float32 and got.shape == (5, 2)
    np.testing.assert_array_equal(got.numpy(), np.concatenate(parts))

"""Training loop: runs, logs, checkpoints, resumes after an interruption, refuses mismatches."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from caloreco.errors import ConfigError, InputFileError
from caloreco.training.checkpoint import load_checkpoint
from caloreco.training.trainer import Trainer, TrainConfig


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), model_options={"cr": 0.125}, epochs=2,
                val_fraction=0.2, val_events=1, checkpoint_every=2, log_every=1,
                progress=False, lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


def test_train_logs_checkpoints_and_learns(dtau_dataset, tmp_path):
    trainer = Trainer(_cfg(dtau_dataset, tmp_path / "run", epochs=3))
    losses = []
    best = trainer.fit(on_log=lambda r: losses.append(r["loss"]) if r["kind"] == "train" else None)
    first = losses[0]
    assert best.exists() and (tmp_path / "run" / "last.pt").exists()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert {r["kind"] for r in rows} == {"train", "val"}
    assert sum(r["kind"] == "val" for r in rows) == 3
    assert any((tmp_path / "run" / "tb").iterdir())
    assert min(losses[-4:]) < first  # the loss goes down on 5 events seen 3 times
    ckpt = load_checkpoint(tmp_path / "run")  # a run directory resolves to best.pt
    assert ckpt.model_name == "spvcnn" and ckpt.model_config["cr"] == 0.125
    assert "pq" in ckpt.metrics and 1 <= ckpt.training["epoch"] <= 3
    assert load_checkpoint(tmp_path / "run" / "last.pt").training["epoch"] == 3


def test_resume_after_interruption_continues_where_it_stopped(dtau_dataset, tmp_path):
    torch.manual_seed(0)
    ref = Trainer(_cfg(dtau_dataset, tmp_path / "ref"))
    ref.fit()

    run = tmp_path / "run"
    trainer = Trainer(_cfg(dtau_dataset, run))

    def stop_at_step_3(row):
        if row["kind"] == "train" and row["step"] == 3:
            raise Interrupt()

    with pytest.raises(Interrupt):
        trainer.fit(on_log=stop_at_step_3)
    saved = load_checkpoint(run / "last.pt")
    assert saved.training["global_step"] == 2  # last checkpoint before the "crash"
    resumed = Trainer(_cfg(dtau_dataset, run), resume=True)
    assert resumed.global_step == 2 and resumed.epoch == 0 and resumed.step_in_epoch == 2
    resumed.fit()
    assert resumed.global_step == ref.global_step
    # same data order and optimiser state: the resumed run ends where the uninterrupted did
    for (name, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_resume_refuses_other_config_and_missing_run(dtau_dataset, tmp_path):
    Trainer(_cfg(dtau_dataset, tmp_path / "run", epochs=1)).fit()
    with pytest.raises(ConfigError, match="another model configuration"):
        Trainer(_cfg(dtau_dataset, tmp_path / "run", model_options={"cr": 0.25}), resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        Trainer(_cfg(dtau_dataset, tmp_path / "empty"), resume=True)


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"some": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(InputFileError, match="not a caloreco checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(InputFileError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_init_starts_from_a_checkpoints_weights(dtau_dataset, tmp_path):
    from caloreco.training.checkpoint import ship_checkpoint

    Trainer(_cfg(dtau_dataset, tmp_path / "base", epochs=1)).fit()
    shipped = ship_checkpoint(tmp_path / "base" / "last.pt", tmp_path / "shipped.pt")  # float16
    base = load_checkpoint(shipped)
    tuned = Trainer(_cfg(dtau_dataset, tmp_path / "tuned", epochs=1, seed=7,
                         init=str(shipped), assign="nearest", t_beta=0.5, r_max=12.0,
                         position_scale=10.0))
    # fresh optimiser and schedule, but the weights of the checkpoint (float16 -> float32)
    assert tuned.global_step == 0 and tuned.epoch == 0
    for name, value in tuned.model.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32
            torch.testing.assert_close(value, base.state_dict[name], msg=name)
    tuned.fit()
    last = load_checkpoint(tmp_path / "tuned" / "last.pt")
    # the validation clustering (with the locality cut and the detector term) is the
    # checkpoint's clustering record
    assert last.clustering == {"t_beta": 0.5, "t_d": 0.7, "assign": "nearest", "r_max": 12.0,
                               "attach_r": None, "attach_passes": 1, "position_scale": 10.0, "t_signal": None}
    with open(tmp_path / "tuned" / "metrics.csv", newline="") as fh:
        val = [row for row in csv.DictReader(fh) if row["kind"] == "val"]
    assert val and all(0.0 <= float(row["pq"]) <= 1.0 for row in val)
    with pytest.raises(ConfigError, match="r_max must be a finite number > 0"):
        Trainer(_cfg(dtau_dataset, tmp_path / "z", r_max=-1.0))
    with pytest.raises(ConfigError, match="position_scale must be a finite number > 0"):
        Trainer(_cfg(dtau_dataset, tmp_path / "z", position_scale=0.0))
    with pytest.raises(ConfigError, match="another model configuration"):
        Trainer(_cfg(dtau_dataset, tmp_path / "x", model_options={"cr": 0.25}, init=str(shipped)))
    with pytest.raises(InputFileError, match="does not exist"):
        Trainer(_cfg(dtau_dataset, tmp_path / "y", init=str(tmp_path / "missing.pt")))


def test_validation_clustering_with_attachment_is_recorded(dtau_dataset, tmp_path):
    """The validation clustering is the shipped one (cut and attachment, condense_outputs),
    and the checkpoint's clustering record holds all of it."""
    cfg = _cfg(dtau_dataset, tmp_path / "run", epochs=1, t_beta=0.5, t_d=0.7, assign="nearest",
               r_max=10.0, attach_r=5.0, attach_passes=3)
    trainer = Trainer(cfg)
    trainer.fit()
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt.clustering == {"t_beta": 0.5, "t_d": 0.7, "assign": "nearest", "r_max": 10.0,
                               "attach_r": 5.0, "attach_passes": 3, "position_scale": None, "t_signal": None}
    from caloreco.clustering.model_clustering import ModelClusterer

    clusterer = ModelClusterer.from_checkpoint(tmp_path / "run" / "last.pt")
    assert clusterer.attach_r == 5.0 and clusterer.attach_passes == 3
    with pytest.raises(ConfigError, match="attach"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", attach_r=-1.0))


def test_local_repulsion_trains_and_is_stored(dtau_dataset, tmp_path):
    cfg = _cfg(dtau_dataset, tmp_path / "local", epochs=1, r_local=8.0, r_max=8.0)
    trainer = Trainer(cfg)
    assert trainer.loss_fn.r_local == 8.0
    trainer.fit()
    last = load_checkpoint(tmp_path / "local" / "last.pt")
    assert last.training["config"]["r_local"] == 8.0
    assert last.clustering["r_max"] == 8.0
    with open(tmp_path / "local" / "metrics.csv", newline="") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh) if row["kind"] == "train"]
    assert losses and all(math.isfinite(v) for v in losses)
    with pytest.raises(ConfigError, match="needs repulsion='hits'"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", r_local=8.0, repulsion="groups"))


def test_pair_repulsion_is_logged_and_stored(dtau_dataset, tmp_path):
    cfg = _cfg(dtau_dataset, tmp_path / "pair", epochs=1, r_local=8.0,
               loss_weights={"pair": 0.5}, pair_margin=1.2)
    trainer = Trainer(cfg)
    assert trainer.loss_fn.coefficients["pair"] == 0.5 and trainer.loss_fn.pair_margin == 1.2
    trainer.fit()
    with open(tmp_path / "pair" / "metrics.csv", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["kind"] == "train"]
    pair = [float(row["pair"]) for row in rows]
    assert pair and all(math.isfinite(v) and v >= 0 for v in pair) and max(pair) > 0
    # the logged total holds the weighted pair term on top of the other four
    for row in rows:
        parts = sum(float(row[k]) for k in ("attractive", "repulsive", "coward", "noise"))
        assert float(row["loss"]) == pytest.approx(parts + 0.5 * float(row["pair"]), rel=1e-5)
    config = load_checkpoint(tmp_path / "pair" / "last.pt").training["config"]
    assert config["loss_weights"] == {"pair": 0.5} and config["pair_margin"] == 1.2
    with pytest.raises(ConfigError, match="pair_margin must be a finite number > 0"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", pair_margin=0.0, loss_weights={"pair": 1.0}))


def test_contrast_term_is_logged_and_stored(dtau_dataset, tmp_path):
    cfg = _cfg(dtau_dataset, tmp_path / "contrast", epochs=1,
               loss_weights={"contrast": 0.5}, contrast_k=4, contrast_margin=1.5)
    Trainer(cfg).fit()
    with open(tmp_path / "contrast" / "metrics.csv", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["kind"] == "train"]
    assert rows
    for row in rows:
        same, other = float(row["contrast_same"]), float(row["contrast_other"])
        assert same > 0 and other > 0
        # the logged total holds the weighted contrastive terms on top of the other four
        parts = sum(float(row[k]) for k in ("attractive", "repulsive", "coward", "noise"))
        assert float(row["loss"]) == pytest.approx(parts + 0.5 * (same + other), rel=1e-5)
    config = load_checkpoint(tmp_path / "contrast" / "last.pt").training["config"]
    assert config["loss_weights"] == {"contrast": 0.5}
    assert (config["contrast_k"], config["contrast_margin"]) == (4, 1.5)
    with pytest.raises(ConfigError, match="k >= 1"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", contrast_k=0))
    with pytest.raises(ConfigError, match="weight of the contrast term"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", loss_weights={"contrast": -1.0}))


def test_data_loading_workers_give_the_same_training(dtau_dataset, tmp_path):
    """Events decoded in 2 worker processes: the same batches in the same order, so the
    same weights as loading in the loop."""
    weights = []
    for workers in (0, 2):
        torch.manual_seed(0)
        trainer = Trainer(_cfg(dtau_dataset, tmp_path / f"w{workers}", epochs=1, workers=workers,
                               batch_size=2))
        trainer.fit()
        weights.append(trainer.model.state_dict())
    for (name, a), b in zip(weights[0].items(), weights[1].values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_energy_head_trains_alone_on_a_trained_network(dtau_dataset, tmp_path):
    """--init from a model without an energy head, --energy-head, --trainable energy_mlp:
    every other weight stays as loaded, the energy loss goes down, and the checkpoint holds
    the head."""
    base = Trainer(_cfg(dtau_dataset, tmp_path / "base", epochs=1))
    base.fit()
    cfg = _cfg(dtau_dataset, tmp_path / "head", epochs=3, init=str(tmp_path / "base" / "last.pt"),
               model_options={"cr": 0.125, "energy_head": True}, trainable=["energy_mlp"],
               lr=5e-3)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    energy = []
    trainer.fit(on_log=lambda r: energy.append(r["energy"]) if r["kind"] == "train" else None)
    after = trainer.model.state_dict()
    for k, v in before.items():
        if k.startswith("energy_mlp."):
            assert not torch.equal(v, after[k]), k
        else:
            torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    assert min(energy[-4:]) < energy[0]
    rows = list(csv.DictReader((tmp_path / "head" / "metrics.csv").open()))
    assert all(r["val_energy"] for r in rows if r["kind"] == "val")
    ckpt = load_checkpoint(tmp_path / "head" / "last.pt")
    assert ckpt.model_config["energy_head"] and any(k.startswith("energy_mlp.") for k in ckpt.state_dict)
    with pytest.raises(ConfigError, match="matches no parameter"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", trainable=["nothing_"]))


def test_signal_head_trains_alone_and_gates_the_validation_attachment(dtau_dataset, tmp_path):
    """--init from a model without heads, --signal-head, --trainable signal_mlp: the rest
    of the network stays as loaded (and runs as at inference: no dropout), the signal loss
    goes down, and the checkpoint records the head and the attachment's signal threshold."""
    base = Trainer(_cfg(dtau_dataset, tmp_path / "base", epochs=1))
    base.fit()
    cfg = _cfg(dtau_dataset, tmp_path / "head", epochs=3, init=str(tmp_path / "base" / "last.pt"),
               model_options={"cr": 0.125, "signal_head": True}, trainable=["signal_mlp"],
               lr=5e-3, attach_r=5.0, attach_passes=2, t_signal=0.5)
    trainer = Trainer(cfg)
    trainer._train_mode()
    assert trainer.model.signal_mlp.training and not trainer.model.dropout.training
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    signal = []
    trainer.fit(on_log=lambda r: signal.append(r["signal"]) if r["kind"] == "train" else None)
    after = trainer.model.state_dict()
    for k, v in before.items():
        if k.startswith("signal_mlp."):
            assert not torch.equal(v, after[k]), k
        else:
            torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    assert min(signal[-4:]) < signal[0]
    rows = list(csv.DictReader((tmp_path / "head" / "metrics.csv").open()))
    assert all(r["val_signal"] for r in rows if r["kind"] == "val")
    ckpt = load_checkpoint(tmp_path / "head" / "last.pt")
    assert ckpt.model_config["signal_head"] and ckpt.clustering["t_signal"] == 0.5
    assert any(k.startswith("signal_mlp.") for k in ckpt.state_dict)
    with pytest.raises(ConfigError, match="needs a model with a signal head"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", t_signal=0.5))
    with pytest.raises(ConfigError, match="t_signal must be a probability"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", t_signal=1.5,
                     model_options={"cr": 0.125, "signal_head": True}))
    with pytest.raises(ConfigError, match="has a signal head; train with --signal-head"):
        Trainer(_cfg(dtau_dataset, tmp_path / "bad", init=str(tmp_path / "head" / "last.pt")))


def test_metrics_csv_of_an_older_run_is_rewritten_under_the_current_header(tmp_path):
    """A run resumed from an older version (fewer columns): its rows move under the
    current header instead of new rows running past the old one."""
    from types import SimpleNamespace

    from caloreco.training.trainer import METRIC_FIELDS

    path = tmp_path / "metrics.csv"
    path.write_text("kind,epoch,step,loss,pq\ntrain,0,10,0.5,\nval,0,10,,0.25\n")
    run = SimpleNamespace(out=tmp_path)
    Trainer._log(run, {"kind": "train", "epoch": 1, "step": 20, "loss": 0.4,
                       "contrast_same": 0.1}, None)
    with open(path, newline="") as fh:
        assert next(csv.reader(fh)) == list(METRIC_FIELDS)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["kind"], r["step"], r["loss"], r["pq"]) for r in rows] == [
        ("train", "10", "0.5", ""), ("val", "10", "", "0.25"), ("train", "20", "0.4", "")]
    assert rows[2]["contrast_same"] == "0.1" and rows[0]["contrast_same"] == ""
    assert all(None not in r for r in rows)  # no row longer than the header
    # a current file is appended to, not rewritten
    Trainer._log(run, {"kind": "train", "epoch": 1, "step": 30, "loss": 0.3}, None)
    with open(path, newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["10", "10", "20", "30"]

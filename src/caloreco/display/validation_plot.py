"""Validation plot of the simulation: EM and pion response/resolution, shower maximum, MIPs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from caloreco.geometry.detector import Detector
from caloreco.simulation.guns import GunConfig
from caloreco.simulation.simulator import Simulator
from caloreco.simulation.validation import (
    longitudinal_profile,
    resolution_model,
    resolution_scan,
    shower_maximum,
)
from caloreco.utils.atomic import atomic_path, atomic_write_text

ELECTRON_ENERGIES = (10.0, 20.0, 50.0, 100.0, 200.0, 300.0)
PION_ENERGIES = (10.0, 20.0, 50.0, 100.0, 200.0)
CRITICAL_ENERGY_GEV = 0.010  # as EMShowerParams.critical_energy_gev


def muon_mips(detector: Detector, n_events: int, *, seed: int = 0, eta: float = 2.2) -> np.ndarray:
    """Signal hit energies of 50 GeV muons in MIP units, corrected to normal incidence."""
    sim = Simulator(detector)
    gun = GunConfig(particle="mu-", energy=50.0, eta=eta)
    out = []
    for i in range(n_events):
        rng = np.random.default_rng([seed, 7, i])
        ev = sim.simulate(gun.generate(rng), rng)
        sel = ev.hits["truth_cluster"] >= 0
        out.append(ev.hits["energy_mip"][sel] * np.tanh(eta))
    return np.concatenate(out)


def write_validation(detector: Detector, out_dir: str | Path, *, n_events: int = 100, seed: int = 0) -> dict[str, Any]:
    """Run the validation guns, write ``validation.png`` and ``validation.json``; return the summary."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    e_scan = resolution_scan(detector, "e-", list(ELECTRON_ENERGIES), n_events, seed=seed)
    pi_scan = resolution_scan(detector, "pi+", list(PION_ENERGIES), n_events, seed=seed)
    tmax = []
    for E in (10.0, 50.0, 200.0):
        prof, depth = longitudinal_profile(detector, "e-", E, max(n_events // 3, 10), seed=seed)
        tmax.append((E, shower_maximum(depth, prof), float(np.log(E / CRITICAL_ENERGY_GEV) - 0.5)))
        if E == 50.0:
            prof50, depth50 = prof, depth
    mips = muon_mips(detector, max(n_events // 3, 10), seed=seed)
    e50 = e_scan.response[list(ELECTRON_ENERGIES).index(50.0)]
    p50 = pi_scan.response[list(PION_ENERGIES).index(50.0)]
    summary = {
        "detector": detector.name,
        "n_events_per_point": n_events,
        "electron": e_scan.as_dict(),
        "pion": pi_scan.as_dict(),
        "e_over_pi_50": float(e50 / p50),
        "shower_max_x0": [{"energy": E, "fitted": t, "expected_ln_E_over_Ec_minus_half": ref} for E, t, ref in tmax],
        "muon_mip_mean": float(mips.mean()),
        "muon_mip_median": float(np.median(mips)),
    }

    fig = Figure(figsize=(13, 9), layout="constrained")
    axs = fig.subplots(2, 2)
    ax = axs[0, 0]
    grid = np.linspace(8, 320, 200)
    for scan, name, colour in ((e_scan, "e-", "tab:blue"), (pi_scan, "pi+", "tab:red")):
        ax.errorbar(scan.energies, scan.resolution, scan.resolution_err, fmt="o", color=colour, label=name)
        ax.plot(grid, resolution_model(grid, scan.stochastic, scan.constant), color=colour,
                label=f"{name}: {100 * scan.stochastic:.1f}%/sqrt(E) (+) {100 * scan.constant:.2f}%")
    ax.plot(grid, resolution_model(grid, 0.23, 0.006), "k--", lw=1, label="HGCAL CE-E test beam: 23%/sqrt(E) (+) 0.6%")
    ax.set(xscale="log", yscale="log", xlabel="E [GeV]", ylabel="sigma_E / E", title="Energy resolution")
    ax.legend(fontsize=8)
    ax = axs[0, 1]
    ax.plot(e_scan.energies, e_scan.response, "o-", label="e-")
    ax.plot(pi_scan.energies, pi_scan.response, "s-", label="pi+")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set(xscale="log", xlabel="E [GeV]", ylabel="<E_reco> / E", ylim=(0.5, 1.1), title="Response (EM scale)")
    ax.legend()
    ax = axs[1, 0]
    ax.step(depth50, prof50, where="mid", label="50 GeV e- (mean per layer)")
    for E, t, ref in tmax:
        ax.axvline(t, ls=":", color="gray")
    ax.set(xlabel="depth along the particle [X0]", ylabel="energy per layer [GeV]",
           title="Longitudinal profile; shower max: " + ", ".join(f"{E:.0f} GeV {t:.1f} (ref {r:.1f})" for E, t, r in tmax))
    ax.title.set_fontsize(9)
    ax.legend()
    ax = axs[1, 1]
    ax.hist(mips, bins=np.linspace(0, 5, 60), histtype="step")
    ax.set(xlabel="muon hit energy [MIP, normal incidence]", ylabel="hits",
           title=f"50 GeV muons: mean {mips.mean():.2f}, median {np.median(mips):.2f} MIP per hit")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "validation.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    atomic_write_text(out / "validation.json", json.dumps(summary, indent=2) + "\n")
    return summary

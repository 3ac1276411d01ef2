"""The physics report: markdown and JSON tables, per-object rows, mplhep plots.

Files written into the output directory (each atomically):

``physics.md``     configuration, definitions and one table per quantity and method
``physics.json``   the same numbers (:func:`caloreco.physics.analysis.summarise`)
``jets.parquet``, ``recoil.parquet``, ``neutral.parquet``   the per-object rows, with a
                   ``method`` column
``jet_response.png``, ``jet_response_eta.png``, ``recoil.png``, ``neutral_hadrons.png``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caloreco.utils.atomic import atomic_path, atomic_write_text

DEFINITIONS = """\
Definitions (docs/physics.md):
- reco jets: anti-kt R = {r} on the clusters of each method, massless four-vectors from the beam spot to the
  energy-weighted cluster centroid, EM-scale energies (no calibration, no pileup subtraction);
- gen jets: anti-kt R = {r} on the stable hard-scatter generator particles without neutrinos and muons,
  pT > {ptmin} GeV; matched to the closest reco jet with dR < {dr};
- response = median(E_reco / E_gen); resolution = IQR / 1.349 of E_reco / E_gen, relative = resolution / response;
- recoil (Z -> mu mu): u = sum of cluster pT (muon clusters removed), q_T from the generator muons;
  response = 1 - <u_par + q_T> / <q_T>; sigma = IQR / 1.349 [GeV];
- neutral hadrons: isolated simulated K0L / n; E of the method's cluster holding most of its truth-cluster
  energy over E (K0L) or E - m_n (n).
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]], bin_name: str) -> str:
    head = f"| {bin_name} | " + " | ".join(c[1] for c in columns) + " |"
    sep = "|---" * (len(columns) + 1) + "|"
    body = [f"| {r['lo']:g}-{r['hi']:g} | " + " | ".join(_fmt(r[c[0]], c[2]) for c in columns) + " |"
            for r in rows if r["n"] > 0]
    return "\n".join([head, sep, *body]) if body else "(no entries)"


def markdown(summary: dict[str, Any]) -> str:
    """The markdown report of a :func:`~caloreco.physics.analysis.summarise` summary."""
    cfg = summary["config"]
    eta = summary["eta_variable"]
    lines = [f"# Physics validation: {cfg['process']} on {summary['detector']}", "",
             f"{summary['n_events']} events, pileup mu = {cfg['pileup']:g}, data: `{summary.get('data', '')}`; "
             f"methods: {', '.join(summary['methods'])}.", "",
             DEFINITIONS.format(r=cfg["jet_r"], ptmin=cfg["gen_jet_pt_min"], dr=cfg["match_dr"]), ""]
    jet_cols = (("n", "n", 0), ("median", "response", 3), ("median_err", "+-", 3), ("sigma", "resolution", 3),
                ("rel_sigma", "rel. resolution", 3))
    for name, m in summary["methods"].items():
        eff = m["jet_efficiency"]
        lines += [f"## {name}", ""]
        if "settings" in m:
            st = m["settings"]
            cut = "none" if st.get("r_max") is None else f"{st['r_max']:g} cm"
            attach = ("none" if st.get("attach_r") is None else
                      f"{st['attach_r']:g} cm x {st.get('attach_passes', 1)}"
                      + ("" if st.get("t_signal") is None
                         else f" of the hits with signal probability >= {st['t_signal']:g}"))
            term = ("none" if st.get("position_scale") is None
                    else f"{st['position_scale']:g} cm")
            lines += [f"Model `{st['model']}`, t_beta = {st['t_beta']:g}, t_d = {st['t_d']:g}, "
                      f"rule {st.get('assign', 'first')}, locality cut {cut}, detector term "
                      f"{term}, left-over attachment {attach}.", ""]
        if "clustered_energy_fraction" in m:
            lines += [f"Hit energy in clusters: {_fmt(m['clustered_energy_fraction'])} of the total.", ""]
        lines += [
                  f"Jet energy response vs gen-jet pT [GeV] (contained jets; matched {eff['n_matched']} of "
                  f"{eff['n_gen']}):", "", _table(m["jets_vs_pt"], jet_cols, "pT"), "",
                  f"Jet energy response vs gen-jet {eta}:", "", _table(m["jets_vs_eta"], jet_cols, eta), ""]
        if "recoil_vs_qt" in m:
            cols = (("n", "n", 0), ("qt_mean", "<q_T>", 1), ("response", "response", 3),
                    ("sigma_par", "sigma(u_par + q_T)", 2), ("sigma_perp", "sigma(u_perp)", 2))
            lines += ["Hadronic recoil vs q_T [GeV]:", "", _table(m["recoil_vs_qt"], cols, "q_T"), ""]
        if "neutral_vs_eta" in m:
            lines += [f"Neutral-hadron energy response vs {eta}:", "", _table(m["neutral_vs_eta"], jet_cols, eta), ""]
    if "recoil_reference_vs_qt" in summary:
        cols = (("n", "n", 0), ("qt_mean", "<q_T>", 1), ("response", "response", 3),
                ("sigma_par", "sigma(u_par + q_T)", 2), ("sigma_perp", "sigma(u_perp)", 2))
        lines += ["## Reference: generator particles reaching the calorimeter", "",
                  "Hadronic recoil vs q_T [GeV] of a perfect calorimeter with this acceptance:", "",
                  _table(summary["recoil_reference_vs_qt"], cols, "q_T"), ""]
    if "td_scan" in summary:
        head = "| t_d | " + " | ".join(c[1] for c in jet_cols) + " |"
        table = "\n".join([head, "|---" * (len(jet_cols) + 1) + "|"] + [
            f"| {t} | " + " | ".join(_fmt(v["all"][c[0]], c[2]) for c in jet_cols) + " |"
            for t, v in summary["td_scan"].items()])
        lines += ["## SPVCNN cluster radius t_d vs jets", "",
                  "All contained matched jets (the network run once, its outputs re-clustered at each "
                  "t_d):", "", table, ""]
        for t, v in summary["td_scan"].items():
            lines += [f"t_d = {t}, response vs gen-jet pT:", "", _table(v["jets_vs_pt"], jet_cols, "pT"), ""]
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in summary["seconds"].items())
    lines += [f"Timings: {secs}.", ""]
    return "\n".join(lines)


def _write_rows(tables: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[np.ndarray]] = {}
    names: list[np.ndarray] = []
    for method, t in tables.items():
        n = len(next(iter(t.values()))) if t else 0
        names.append(np.array([method] * n, dtype=object))
        for k, v in t.items():
            cols.setdefault(k, []).append(np.asarray(v))
    if not names:
        return
    table = pa.table({"method": np.concatenate(names), **{k: np.concatenate(v) for k, v in cols.items()}})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _plot(panels: Sequence[tuple[str, str, str, str]], series: dict[str, Sequence[dict[str, Any]]],
          xlabel: str, path: Path, title: str, *, logx: bool = False) -> None:
    """One figure, one panel per (key, err key or '', ylabel, reference line) over methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    with plt.style.context(hep.style.CMS):
        fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6))
        axes = np.atleast_1d(axes)
        for ax, (key, err, ylabel, ref) in zip(axes, panels):
            for method, rows in series.items():
                rows = [r for r in rows if r["n"] > 0]
                if not rows:
                    continue
                x = [0.5 * (r["lo"] + r["hi"]) for r in rows]
                xerr = [0.5 * (r["hi"] - r["lo"]) for r in rows]
                y = [r[key] for r in rows]
                yerr = [r[err] for r in rows] if err else None
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", label=method)
            if ref:
                ax.axhline(float(ref), color="grey", ls="--", lw=1)
            if logx:
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=14)
        fig.suptitle(title, fontsize=16)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        plt.close(fig)


def write_report(summary: dict[str, Any], result: Any, out: str | Path) -> Path:
    """Write every file listed in the module docstring into ``out``; returns ``out/physics.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "physics.json", json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n")
    md = atomic_write_text(out / "physics.md", markdown(summary))
    _write_rows(result.jets, out / "jets.parquet")
    _write_rows({k: v for k, v in result.recoil.items() if len(v.get("qt", []))}, out / "recoil.parquet")
    _write_rows(result.neutral, out / "neutral.parquet")
    methods = summary["methods"]
    cfg = summary["config"]
    title = f"{cfg['process']}, {summary['detector']}, mu = {cfg['pileup']:g}, {summary['n_events']} events"
    eta = summary["eta_variable"]
    resp = ("median", "median_err", "response E_reco/E_gen", "1")
    reso = ("rel_sigma", "", "rel. resolution", "")
    _plot([resp, reso], {k: m["jets_vs_pt"] for k, m in methods.items()}, "gen-jet pT [GeV]",
          out / "jet_response.png", title, logx=True)
    _plot([resp, reso], {k: m["jets_vs_eta"] for k, m in methods.items()}, f"gen-jet {eta}",
          out / "jet_response_eta.png", title)
    recoil = {k: m["recoil_vs_qt"] for k, m in methods.items() if "recoil_vs_qt" in m}
    if recoil and "recoil_reference_vs_qt" in summary:
        recoil["generator (reaching)"] = summary["recoil_reference_vs_qt"]
    if recoil:
        _plot([("response", "", "recoil response", "1"), ("sigma_par", "", "sigma(u_par + q_T) [GeV]", ""),
               ("sigma_perp", "", "sigma(u_perp) [GeV]", "")], recoil, "q_T [GeV]", out / "recoil.png", title)
    neutral = {k: m["neutral_vs_eta"] for k, m in methods.items() if "neutral_vs_eta" in m}
    if neutral:
        _plot([("median", "median_err", "neutral-hadron response", "1"), reso], neutral, eta,
              out / "neutral_hadrons.png", title)
    return md

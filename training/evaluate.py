"""``iohwatch evaluate``: the exported engine against the baselines on a cohort's test split.

Protocol (DESIGN.md, "Training and honest evaluation"):

* every eligible sample of every test recording is scored (no case-control sampling); for each
  horizon, samples whose label is excluded (event under way, artifact, unobserved future) are
  dropped for that horizon only;
* the model is the exported engine (``RUN/engine``, ONNX Runtime, calibrated with the Platt
  parameters fitted on dev), i.e. exactly what the agent loads;
* every method's operating threshold is chosen on the **dev** split for ``target_fa_per_h`` false
  alarms per hour (``training.metrics``) and applied unchanged to test; the MAP-threshold
  baseline is an alarm by itself (score 1 = MAP < 75 mmHg) and keeps that rule;
* AUROC/AUPRC with subject-clustered bootstrap 95 % intervals (``n_boot`` resamples of subjects,
  seeded); Brier score and calibration for the methods that output probabilities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from streams.signal.cells import LEAD_OUT_S
from training import baselines as B
from training import metrics as M
from training.batches import build_text_table, forecaster_inputs
from training.cohort import load_cases, load_meta, load_split

log = logging.getLogger("iohwatch.evaluate")

METHODS = ("model", "current_map", "map_threshold_75", "linear_extrapolation", "hpi_cnn")
PROBABILISTIC = ("model", "hpi_cnn")


def model_scores(engine_dir: Path, split, text, batch: int = 256) -> np.ndarray:
    """Calibrated risks (N, H) of the exported forecaster on a split (ONNX Runtime)."""
    from models.runtime import load_engine

    eng = load_engine(engine_dir, backend="onnxruntime")
    cal = eng.manifest.models[eng.model].calibration
    a = np.asarray(cal.platt_a, np.float64)
    b = np.asarray(cal.platt_b, np.float64)
    needs = {s.name for s in eng.inputs}
    out = []
    for i in range(0, len(split), batch):
        idx = np.arange(i, min(i + batch, len(split)))
        x = forecaster_inputs(split, idx, text)
        res = eng.run({k: v.numpy() for k, v in x.items() if k in needs})
        out.append(1.0 / (1.0 + np.exp(-(a * res["ioh_logits"].astype(np.float64) + b))))
    return np.concatenate(out) if out else np.zeros((0, len(a)))


def baseline_scores(split, horizons_min, grid_s: float, hpi: B.HPIBaseline) -> dict[str, np.ndarray]:
    """(N, H) score per baseline (larger = more risk)."""
    m = np.asarray(split["map_mmhg"], np.float64)
    v = np.asarray(split["valid"])
    H = len(horizons_min)
    cur = B.current_map_score(m, v, grid_s)
    thr = B.map_threshold_score(m, v, grid_s, 75.0)
    lin = np.stack([B.linear_extrapolation_score(m, v, h, grid_s) for h in horizons_min], 1)
    caseid = np.asarray(split["caseid"])
    hpi_s = np.zeros(len(split))
    for i in range(0, len(split), 2048):
        hpi_s[i:i + 2048] = hpi.score(np.asarray(split["wave_mmhg"][i:i + 2048], np.float64))
    hpi_s = B.carry_forward(hpi_s, caseid)
    return {"current_map": np.repeat(cur[:, None], H, 1), "map_threshold_75": np.repeat(thr[:, None], H, 1),
            "linear_extrapolation": lin, "hpi_cnn": np.repeat(hpi_s[:, None], H, 1)}


def _events(split) -> M.EventTable:
    return M.EventTable(case=np.asarray(split["event_caseid"]), onset_ns=np.asarray(split["event_onset_ns"]),
                        end_ns=np.asarray(split["event_end_ns"]))


def evaluate(cohort: Path, run: Path, out: Path, target_fa_per_h: float = 1.0, n_boot: int = 200,
             seed: int = 0, plots: bool = True, dev_cohort: Path | None = None) -> dict:
    """Test split of ``cohort``; dev (thresholds) and train (HPI statistics) splits of
    ``dev_cohort`` (default: the same cohort; for a held-out cohort, the training cohort)."""
    cohort, run, out = Path(cohort), Path(run), Path(out)
    dev_cohort = Path(dev_cohort) if dev_cohort else cohort
    out.mkdir(parents=True, exist_ok=True)
    meta = load_meta(cohort)
    spec = meta["spec"]
    dev_spec = load_meta(dev_cohort)["spec"]
    if dev_spec != spec:
        raise ValueError(f"evaluate: cohorts {cohort} and {dev_cohort} were built with different settings")
    horizons = list(spec["horizons_min"])
    grid_s, stride_s = float(spec["grid_s"]), float(spec["stride_s"])
    test, dev, train = load_split(cohort, "test"), load_split(dev_cohort, "dev"), load_split(dev_cohort, "train")
    if len(test) == 0 or len(dev) == 0:
        raise ValueError(f"evaluate: cohort {cohort} has an empty test ({len(test)}) or dev ({len(dev)}) split")
    engine_dir = run / "engine" if (run / "engine").is_dir() else run
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    if manifest.get("training_data_hash") and manifest["training_data_hash"] != meta["data_hash"]:
        log.warning("evaluate: engine trained on cohort %s, evaluating on cohort %s (held-out cohort)",
                    manifest["training_data_hash"][:12], meta["data_hash"][:12])
    cases = [c for c in load_cases(cohort) if c["split"] == "test"]
    cases += [c for c in load_cases(dev_cohort) if c["split"] == "dev"]
    seen = set()
    cases = [c for c in cases if not (c["caseid"] in seen or seen.add(c["caseid"]))]
    from models.configs import ModelConfig

    mcfg = ModelConfig.from_dict(manifest["config"])
    text = build_text_table(cases, mcfg.text_tokens, mcfg.text_dim)

    # HPI statistics from the training split's waveforms (label-free)
    ref = np.asarray(train["wave_mmhg"][np.random.default_rng(seed).choice(len(train), min(len(train), 2000),
                                                                          replace=False)], np.float64)
    hpi = B.HPIBaseline().calibrate(ref, seed=seed)

    scores = {}
    for name, sp in (("dev", dev), ("test", test)):
        s = {"model": model_scores(engine_dir, sp, text)}
        s.update(baseline_scores(sp, horizons, grid_s, hpi))
        scores[name] = s

    report = {"cohort": str(cohort), "cohort_data_hash": meta["data_hash"], "run": str(run),
              "dev_cohort": str(dev_cohort),
              "engine_version": manifest.get("version"), "engine_training_data_hash": manifest.get("training_data_hash"),
              "target_false_alarms_per_h": target_fa_per_h, "n_boot": n_boot, "stride_s": stride_s,
              "test": {"cases": int(np.unique(test["caseid"]).size), "subjects": int(np.unique(test["subjectid"]).size),
                       "samples": len(test), "hours_monitored": None, "events": int(len(test["event_caseid"]))},
              "horizons": {}}
    curves = {}
    lab_t, lab_d = np.asarray(test["labels"]), np.asarray(dev["labels"])
    for j, h in enumerate(horizons):
        ok_t, ok_d = lab_t[:, j] >= 0, lab_d[:, j] >= 0
        y_t, y_d = lab_t[ok_t, j], lab_d[ok_d, j]
        case_t, t_t = np.asarray(test["caseid"])[ok_t], np.asarray(test["t_ns"])[ok_t]
        case_d, t_d = np.asarray(dev["caseid"])[ok_d], np.asarray(dev["t_ns"])[ok_d]
        subj_t = np.asarray(test["subjectid"])[ok_t]
        hr = {"samples": int(ok_t.sum()), "positives": int(y_t.sum()), "prevalence": float(y_t.mean()),
              "hours_monitored": float(ok_t.sum() * stride_s / 3600.0), "methods": {}}
        rearm_s = h * 60.0
        for meth in METHODS:
            st, sd = scores["test"][meth][ok_t, j], scores["dev"][meth][ok_d, j]
            r = {"auroc": M.auroc(y_t, st), "auprc": M.average_precision(y_t, st)}
            r["auroc_ci"] = M.bootstrap_ci(M.auroc, y_t, st, subj_t, n_boot, seed)
            r["auprc_ci"] = M.bootstrap_ci(M.average_precision, y_t, st, subj_t, n_boot, seed)
            if meth in PROBABILISTIC:
                r["brier"] = M.brier(y_t, st)
                r["calibration"] = M.calibration_bins(y_t, st, 10)
            thr = 0.5 if meth == "map_threshold_75" else M.threshold_at_fa_rate(
                y_d, sd, case_d, t_d, stride_s, target_fa_per_h, rearm_s)
            op = M.operating_point(y_t, st, thr, case_t, t_t, stride_s, rearm_s)
            op["dev_false_alarms_per_h"] = M.false_alarms_per_hour(y_d, sd >= thr, case_d, t_d, stride_s, rearm_s)
            ev = M.event_alarms(_events(test), y_t, st >= thr, case_t, t_t, rearm_s, decision_delay_s=LEAD_OUT_S)
            op.update({k: v for k, v in ev.items()})
            r["operating_point"] = op
            # sensitivity against false alarms per hour (test), over thresholds
            qs = np.unique(np.quantile(st, np.linspace(0, 1, 60)))
            fa_curve = [(M.false_alarms_per_hour(y_t, st >= q, case_t, t_t, stride_s, rearm_s),
                         float(((st >= q) & (y_t == 1)).sum() / max(1, y_t.sum()))) for q in qs]
            curves[(h, meth)] = {"roc": M.roc_curve(y_t, st), "pr": M.pr_curve(y_t, st), "fa": fa_curve}
            hr["methods"][meth] = r
        report["horizons"][str(h)] = hr
    report["test"]["hours_monitored"] = float(len(test) * stride_s / 3600.0)
    report["bar"] = bar_check(report)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    # The agent raises predictive alerts at the model's dev-chosen operating point, never at a
    # level picked on test: alerting.json goes beside the report and the engine.
    alerting = alerting_levels(report, str(dev_cohort))
    for d in (out, engine_dir):
        (d / "alerting.json").write_text(json.dumps(alerting, indent=2) + "\n")
    if plots:
        make_plots(report, curves, out)
    return report


def alerting_levels(report: dict, dev_cohort: str) -> dict:
    """Per-horizon alert raise levels: the model's thresholds chosen on the dev split for the
    target false-alarm rate (``models.forecaster.load_alert_thresholds`` reads them)."""
    return {
        "raise_risk": {h: round(float(hr["methods"]["model"]["operating_point"]["threshold"]), 4)
                       for h, hr in report["horizons"].items()},
        "target_false_alarms_per_h": report["target_false_alarms_per_h"],
        "chosen_on": f"dev split of {dev_cohort}",
        "source": "report.json: horizons.<h>.methods.model.operating_point.threshold",
    }


def bar_check(report: dict) -> dict:
    """Does the model beat every baseline in AUROC and AUPRC at every horizon, and is its median
    lead time at the dev-chosen operating point >= 5 min (at the 15 min horizon, the only one whose
    look-back window can hold a 5 min lead at every onset)?"""
    beats = {}
    for h, hr in report["horizons"].items():
        mm = hr["methods"]["model"]
        for meth, r in hr["methods"].items():
            if meth == "model":
                continue
            beats[f"{h}:{meth}"] = bool(mm["auroc"] > r["auroc"] and mm["auprc"] > r["auprc"])
    h_max = max(report["horizons"], key=int)
    lead = report["horizons"][h_max]["methods"]["model"]["operating_point"]["lead_time_median_min"]
    return {"beats_all_baselines": all(beats.values()), "per_comparison": beats,
            "lead_time_median_min_at_max_horizon": lead, "lead_ok": bool(np.isfinite(lead) and lead >= 5.0)}


def _fmt_ci(v, ci) -> str:
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def render_markdown(report: dict) -> str:
    t = report["test"]
    lines = [
        "# IOH forecasting: model vs baselines (test split)",
        "",
        f"Cohort `{report['cohort']}` (data hash `{report['cohort_data_hash'][:12]}`), engine "
        f"`{report['engine_version']}`. Test: {t['cases']} cases, {t['subjects']} subjects, "
        f"{t['samples']} samples every {report['stride_s']:.0f} s ({t['hours_monitored']:.1f} h), {t['events']} IOH events.",
        f"95 % intervals: subject-clustered bootstrap ({report['n_boot']} resamples). Operating thresholds "
        f"chosen on dev for {report['target_false_alarms_per_h']} false alarm(s) per hour, applied to test.",
        "",
        "| horizon | prevalence | method | AUROC (95 % CI) | AUPRC (95 % CI) | sens | PPV | FA/h | event sens | median lead (min) | lead >= 5 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h, hr in report["horizons"].items():
        for meth, r in hr["methods"].items():
            op = r["operating_point"]
            lines.append(
                f"| {h} min | {hr['prevalence']:.3f} | {meth} | {_fmt_ci(r['auroc'], r['auroc_ci'])} | "
                f"{_fmt_ci(r['auprc'], r['auprc_ci'])} | {op['sensitivity']:.2f} | {op['ppv']:.2f} | "
                f"{op['false_alarms_per_h']:.2f} | {op['event_sensitivity']:.2f} ({op['detected']}/{op['events']}) | "
                f"{op['lead_time_median_min']:.1f} | {op['lead_time_share_ge_5min']:.2f} |")
    lines += ["", "Brier score (probabilistic outputs): " + "; ".join(
        f"{h} min: " + ", ".join(f"{m} {r['brier']:.4f}" for m, r in hr["methods"].items() if "brier" in r)
        for h, hr in report["horizons"].items())]
    b = report["bar"]
    lines += ["", f"Model beats every baseline in AUROC and AUPRC at every horizon: **{b['beats_all_baselines']}**; "
              f"median lead time at the largest horizon: {b['lead_time_median_min_at_max_horizon']:.1f} min "
              f"(>= 5 min: **{b['lead_ok']}**).", ""]
    return "\n".join(lines)


def make_plots(report: dict, curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = list(report["horizons"])
    for kind in ("roc", "pr", "fa"):
        fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4.2), squeeze=False)
        for ax, h in zip(axes[0], horizons):
            for meth in METHODS:
                c = curves[(int(h), meth)]
                if kind == "roc":
                    ax.plot(*c["roc"], label=f"{meth} {report['horizons'][h]['methods'][meth]['auroc']:.3f}")
                    ax.plot([0, 1], [0, 1], "k:", lw=0.5)
                    ax.set_xlabel("false-positive rate")
                    ax.set_ylabel("sensitivity")
                elif kind == "pr":
                    ax.plot(*c["pr"], label=f"{meth} {report['horizons'][h]['methods'][meth]['auprc']:.3f}")
                    ax.axhline(report["horizons"][h]["prevalence"], color="k", ls=":", lw=0.5)
                    ax.set_xlabel("recall")
                    ax.set_ylabel("precision")
                else:
                    fa = np.array(c["fa"])
                    ax.plot(fa[:, 0], fa[:, 1], ".-", label=meth)
                    ax.set_xlabel("false alarms per hour")
                    ax.set_ylabel("sensitivity")
                    ax.set_xlim(0, 10)
            ax.set_title(f"{h} min")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / {"roc": "roc.png", "pr": "pr.png", "fa": "false_alarms_vs_sensitivity.png"}[kind], dpi=90)
        plt.close(fig)
    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4.2), squeeze=False)
    for ax, h in zip(axes[0], horizons):
        for meth in PROBABILISTIC:
            bins = [b for b in report["horizons"][h]["methods"][meth]["calibration"] if b["n"]]
            ax.plot([b["mean_pred"] for b in bins], [b["frac_pos"] for b in bins], "o-", label=meth)
        ax.plot([0, 1], [0, 1], "k:", lw=0.5)
        ax.set_xlabel("predicted risk")
        ax.set_ylabel("observed share")
        ax.set_title(f"calibration, {h} min")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4.2), squeeze=False)
    for ax, h in zip(axes[0], horizons):
        for meth in ("model", "linear_extrapolation", "hpi_cnn"):
            lt = report["horizons"][h]["methods"][meth]["operating_point"]["lead_times_min"]
            if lt:
                ax.hist(lt, bins=np.arange(0, int(h) + 1.0, 0.5), alpha=0.5, label=meth)
        ax.set_xlabel("lead time (min)")
        ax.set_ylabel("events")
        ax.set_title(f"lead time at the dev threshold, {h} min")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lead_time.png", dpi=90)
    plt.close(fig)

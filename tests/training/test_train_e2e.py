"""One tiny run end to end: simulate -> cohort -> train (killed, then resumed) -> evaluate."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import main

pytestmark = pytest.mark.slow


def _log(run):
    p = run / "train_log.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_simulate_cohort_train_resume_evaluate(tmp_path):
    from training.simulator import write_cohort

    rec = tmp_path / "rec"
    write_cohort(rec, 8, seed=5, minutes=24, scenario="demo", progress=False)
    cohort = tmp_path / "cohort"
    r = CliRunner().invoke(main, ["cohort", "build", "--recordings", str(rec), "--clinical", str(rec / "clinical.csv"),
                                  "--out", str(cohort), "--split", "0.5,0.25,0.25", "--seed", "0"])
    assert r.exit_code == 0, r.output
    meta = json.loads((cohort / "meta.json").read_text())
    assert meta["recordings_used"] == 8 and sum(meta["summary"]["events"].values()) >= 4

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "agent.cli", "train", "--cohort", str(cohort), "--out", str(run),
           "--epochs", "3", "--diffusion-steps", "10", "--samples-per-epoch", "96", "--threads", "1"]
    env = dict(os.environ, IOHWATCH_LOG_LEVEL="warning")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline and proc.poll() is None:
            if any(e.get("phase") == "finetune" and e.get("epoch") == 0 for e in _log(run)):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "training ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)     # interrupted after the first fine-tuning epoch
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert not (run / "engine").exists()
    before = _log(run)

    r = CliRunner().invoke(main, ["train", "--cohort", str(cohort), "--out", str(run), "--resume", "--epochs", "3",
                                  "--diffusion-steps", "10", "--samples-per-epoch", "96", "--threads", "1"])
    assert r.exit_code == 0, r.output
    after = _log(run)[len(before):]
    assert after[0]["event"] == "resume" and after[0]["phase"] == "finetune" and after[0]["epoch"] >= 1
    # the resumed run did not repeat the augmentation, pretraining or the finished epoch
    assert not any(e.get("phase") in ("augment", "pretrain") for e in after)
    assert not any(e.get("phase") == "finetune" and e.get("epoch") == 0 for e in after)
    # every epoch ran once; the resumed run starts right after the last checkpointed epoch
    def epochs(entries):
        return [e["epoch"] for e in entries if e.get("phase") == "finetune" and "epoch" in e and "event" not in e]

    ft = epochs(_log(run))
    assert ft == sorted(set(ft)) and ft[-1] == 2, ft
    last_before = max(epochs(before))
    assert after[0]["epoch"] in (last_before + 1, last_before + 2)
    manifest = json.loads((run / "engine" / "manifest.json").read_text())
    assert manifest["trained"] and manifest["training_data_hash"] == meta["data_hash"]
    info = json.loads((run / "run.json").read_text())
    assert info["cohort_data_hash"] == meta["data_hash"] and info["seed"] == 0

    # the exported engine loads through the agent's forecaster and scores a window
    from agent.forecasting import ForecastInput
    from agent.settings import Settings
    from models.forecaster import load_forecaster

    fc = load_forecaster(Settings(engine_path=run / "engine"))
    assert fc.fallback_reason is None, fc.fallback_reason
    x = ForecastInput(bed_id="OR-1", t_ns=0, map_mmhg=np.full(300, 70, np.float32),
                      sbp_mmhg=np.full(300, 95, np.float32), dbp_mmhg=np.full(300, 55, np.float32),
                      hr_bpm=np.full(300, 70, np.float32), valid=np.ones(300, bool),
                      wave_mmhg=np.full(3000, 70, np.float32), grid_s=3.0)
    risk = fc.predict([x])[0].risk
    assert set(risk) == {5, 10, 15} and all(0 <= v <= 1 for v in risk.values())

    report = tmp_path / "report"
    r = CliRunner().invoke(main, ["evaluate", "--cohort", str(cohort), "--run", str(run), "--out", str(report),
                                  "--n-boot", "20"])
    assert r.exit_code == 0, r.output
    rep = json.loads((report / "report.json").read_text())
    assert set(rep["horizons"]["5"]["methods"]) == {"model", "current_map", "map_threshold_75",
                                                     "linear_extrapolation", "hpi_cnn"}
    for name in ("roc.png", "pr.png", "calibration.png", "lead_time.png", "false_alarms_vs_sensitivity.png",
                 "report.md"):
        assert (report / name).stat().st_size > 0
    # The dev-chosen operating point goes beside the engine, and the agent's forecaster reads it.
    from models.forecaster import load_alert_thresholds
    levels = load_alert_thresholds(run / "engine", (5, 10, 15))
    assert levels == {int(h): pytest.approx(rep["horizons"][h]["methods"]["model"]["operating_point"]["threshold"],
                                            abs=1e-4) for h in ("5", "10", "15")}

"""Synthetic cohort of anaesthetised surgical cases in VitalDB format (see DESIGN.md, "Synthetic cohort").

>>> case = simulate_case(1, seed=0, minutes=20)              # one case in memory
>>> write_cohort(Path("cohort"), cases=10, seed=0)           # .vital + clinical.csv + truth sidecars

Modules: ``population`` (patients), ``timeline`` (phases, bleeding, stimulation), ``physiology``
(the 1 s haemodynamic course and the anaesthetist), ``waveform`` (500 Hz beats), ``artifacts``,
``monitor`` (numeric tracks), ``case`` (one case and its ground truth), ``writer`` (files).
"""

from training.simulator.artifacts import DEFAULT_RATES_PER_H, KINDS as ARTIFACT_KINDS, Artifact
from training.simulator.case import (ABP_FS_HZ, Physiology, SimulatedCase, ioh_episodes,
                                     simulate_case, simulate_physiology)
from training.simulator.population import Patient, draw_patient, draw_patients, load_population
from training.simulator.timeline import SCENARIOS
from training.simulator.writer import (ABP_TRACK, CLINICAL_COLUMNS, EVENT_TRACK, clinical_row,
                                       truth_path, vital_path, write_clinical, write_cohort,
                                       write_truth, write_vital)

__all__ = [
    "ABP_FS_HZ", "ABP_TRACK", "ARTIFACT_KINDS", "Artifact", "CLINICAL_COLUMNS", "DEFAULT_RATES_PER_H",
    "EVENT_TRACK", "Patient", "Physiology", "SCENARIOS", "SimulatedCase", "clinical_row",
    "draw_patient", "draw_patients", "ioh_episodes", "load_population", "simulate_case",
    "simulate_physiology", "truth_path", "vital_path", "write_clinical", "write_cohort",
    "write_truth", "write_vital",
]

"""``iohwatch train``: MTRDA augmentation -> stage 1 pretraining -> stage 2 LoRA fine-tuning ->
calibration on dev -> export of engines. Resumable; every phase and epoch is logged.

Run directory ``RUN/``::

    run.json          settings, model config, provenance (cohort hash, git SHA, seed, libraries)
    train_log.jsonl   one JSON object per logged step / epoch / phase
    state.pt          the resumable state, rewritten after every epoch (phase, epoch, weights,
                      optimiser, best-so-far, early-stopping counter, RNG states)
    checkpoint.pt     trained weights (LoRA merged) + calibration, for ``iohwatch export``
    engine/           exported engines + manifest.json (``models.export``)

Determinism: one seed drives the torch and numpy generators; the order of samples in an epoch is
drawn from ``seed + epoch`` so a resumed run sees the same batches it would have seen.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from training import metrics as M
from training.batches import belief_events, build_text_table, forecaster_inputs, targets
from training.cohort import load_cases, load_meta, load_split

log = logging.getLogger("iohwatch.train")

PHASES = ("augment", "pretrain", "finetune", "calibrate", "export", "done")


@dataclass(frozen=True)
class TrainSettings:
    config: str = "tiny"
    seed: int = 0
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    diffusion_steps: int = 400
    aug_factor: float = 0.5            # MTRDA windows per IOH-rich window
    pretrain_epochs: int = 1
    max_pretrain_windows: int = 2000
    finetune_epochs: int = 8
    patience: int = 2                  # epochs without dev AUPRC gain before stopping
    neg_per_pos: float = 3.0           # negatives drawn per positive in each training epoch
    max_samples_per_epoch: int = 4000
    pos_weight: float = 3.0
    belief_minutes: int = 15
    max_minutes: float | None = None   # wall-clock budget for pretraining + fine-tuning
    device: str = "auto"               # auto: CUDA when available, else CPU

    @staticmethod
    def for_config(name: str, **kw) -> "TrainSettings":
        base = {"tiny": TrainSettings(),
                "base": TrainSettings(config="base", batch=128, pretrain_epochs=3, finetune_epochs=20,
                                      patience=4, max_samples_per_epoch=40000, max_pretrain_windows=40000),
                "paper": TrainSettings(config="paper", batch=256, lr=3e-4, pretrain_epochs=10,
                                       finetune_epochs=40, patience=6, max_samples_per_epoch=400000,
                                       max_pretrain_windows=400000, diffusion_steps=5000)}
        if name not in base:
            raise ValueError(f"train: unknown config {name!r}; choose tiny, base or paper")
        return replace(base[name], **{k: v for k, v in kw.items() if v is not None})


class Run:
    """Everything one training run holds in memory; ``state.pt`` is its persistent form."""

    def __init__(self, cohort: Path, out: Path, ts: TrainSettings, progress: Callable | None = None):
        from models.belief_decoder import BeliefDecoder
        from models.configs import get_config
        from models.gated_fusion import GatedFusion
        from training.pretrain import PretrainHeads

        self.cohort, self.out, self.ts = Path(cohort), Path(out), ts
        self.progress = progress or (lambda *a, **k: None)
        self.meta = load_meta(self.cohort)
        spec = self.meta["spec"]
        self.cfg = get_config(ts.config, grid_s=spec["grid_s"], window_s=spec["window_s"],
                              wave_window_s=spec["wave_window_s"], wave_fs_hz=spec["wave_fs_hz"],
                              horizons_min=tuple(spec["horizons_min"]))
        torch.manual_seed(ts.seed)
        self.device = torch.device(ts.device if ts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = GatedFusion(self.cfg).to(self.device)
        self.decoder = BeliefDecoder(self.cfg).to(self.device)
        self.heads = PretrainHeads(self.cfg.n_embd, self.cfg.cells_per_patch).to(self.device)
        self.train = load_split(self.cohort, "train")
        self.dev = load_split(self.cohort, "dev")
        for s in (self.train, self.dev):
            if len(s) == 0:
                raise ValueError(f"train: the {s.name} split of {self.cohort} is empty; rebuild the cohort "
                                 "with more recordings or other --split fractions")
        cases = [c for c in load_cases(self.cohort) if c["split"] in ("train", "dev")]
        self.text = build_text_table(cases, self.cfg.text_tokens, self.cfg.text_dim)
        self.state: dict = {"phase": "augment", "epoch": 0, "best": -1.0, "bad_epochs": 0,
                            "elapsed_s": 0.0, "stopped": None}
        self.aug: dict[str, np.ndarray] | None = None
        self.opt = None
        self.lora = False
        self.best_states: dict | None = None
        self.calibration: dict = {}
        self._t0 = time.monotonic()
        self._elapsed0 = 0.0

    # --- logging and persistence ---------------------------------------------------------------

    def log(self, **rec) -> None:
        rec = {"t_s": round(self.elapsed(), 2), **rec}
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(json.dumps(rec, default=float) + "\n")
        log.info("train: %s", rec)

    def elapsed(self) -> float:
        return self._elapsed0 + time.monotonic() - self._t0

    def over_budget(self) -> bool:
        return self.ts.max_minutes is not None and self.elapsed() > 60.0 * self.ts.max_minutes

    def save_state(self) -> None:
        self.state["elapsed_s"] = self.elapsed()
        blob = {"state": self.state, "lora": self.lora, "model": self.model.state_dict(),
                "decoder": self.decoder.state_dict(), "heads": self.heads.state_dict(),
                "opt": self.opt.state_dict() if self.opt is not None else None,
                "aug": self.aug, "best_states": self.best_states, "calibration": self.calibration,
                "torch_rng": torch.get_rng_state()}
        tmp = self.out / "state.pt.tmp"
        torch.save(blob, tmp)
        os.replace(tmp, self.out / "state.pt")

    def load_state(self) -> None:
        blob = torch.load(self.out / "state.pt", map_location=self.device, weights_only=False)
        self.state = blob["state"]
        if blob["lora"]:
            self._wrap_lora()
        self.model.load_state_dict(blob["model"])
        self.decoder.load_state_dict(blob["decoder"])
        self.heads.load_state_dict(blob["heads"])
        self.aug, self.best_states, self.calibration = blob["aug"], blob["best_states"], blob["calibration"]
        self._make_opt()
        if blob["opt"] is not None:
            self.opt.load_state_dict(blob["opt"])
        torch.set_rng_state(blob["torch_rng"].cpu())
        self._elapsed0 = float(self.state.get("elapsed_s", 0.0))
        self._t0 = time.monotonic()
        self.log(event="resume", phase=self.state["phase"], epoch=self.state["epoch"])

    def _wrap_lora(self) -> None:
        from training.finetune import DECODER_LORA_TARGETS, FUSION_LORA_TARGETS, add_lora

        self.model = add_lora(self.model, FUSION_LORA_TARGETS, self.cfg.lora_r, self.cfg.lora_alpha).to(self.device)
        self.decoder = add_lora(self.decoder, DECODER_LORA_TARGETS, self.cfg.lora_r, self.cfg.lora_alpha).to(self.device)
        self.lora = True

    def _make_opt(self) -> None:
        params = [p for m in (self.model, self.decoder, self.heads) for p in m.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=self.ts.lr, weight_decay=self.ts.weight_decay)

    # --- phases --------------------------------------------------------------------------------

    def phase_augment(self) -> None:
        from training.augment import ResidualDiffusion, augment_windows, decompose
        from training.pretrain import ioh_rich_index

        tr = self.train
        rich = ioh_rich_index(tr["labels"], tr["map_mmhg"], tr["valid"], self.cfg.grid_s)
        self.log(phase="augment", ioh_rich_windows=int(rich.size), train_samples=len(tr))
        aug = {"source": np.zeros(0, np.int64), "map_mmhg": np.zeros((0, self.cfg.n_cells), np.float32),
               "valid": np.zeros((0, self.cfg.n_cells), bool), "rich": rich}
        m = np.asarray(tr["map_mmhg"][rich])
        v = np.asarray(tr["valid"][rich])
        keep = v.mean(1) >= 0.5                          # residuals of windows at least half valid
        if keep.sum() < 8:
            self.log(phase="augment", skipped=f"only {int(keep.sum())} IOH-rich windows are at least half "
                                              "valid (need 8); no MTRDA windows generated")
        else:
            _, resid = decompose(m, v)
            dm = ResidualDiffusion(seed=self.ts.seed)
            losses = dm.fit(resid[keep], steps=self.ts.diffusion_steps,
                            log=lambda s, l: self.progress("augment", s, self.ts.diffusion_steps))
            n_new = int(self.ts.aug_factor * rich.size)
            new, nv, src = augment_windows(m, v, dm, n_new, seed=self.ts.seed)
            aug.update(source=rich[src], map_mmhg=new, valid=nv)
            self.log(phase="augment", diffusion_loss_first=float(np.mean(losses[:20])),
                     diffusion_loss_last=float(np.mean(losses[-20:])), generated=int(n_new))
        self.aug = aug
        self.state.update(phase="pretrain", epoch=0)
        self._make_opt()

    def _pretrain_batch(self, rows: np.ndarray, is_aug: np.ndarray) -> dict:
        """Inputs for IOH-rich windows (sample rows) and MTRDA windows (aug rows)."""
        src = rows.copy()
        src[is_aug] = self.aug["source"][rows[is_aug]]
        x = forecaster_inputs(self.train, src, self.text)
        if is_aug.any():
            a = np.nonzero(is_aug)[0]
            am = self.aug["map_mmhg"][rows[a]]
            av = self.aug["valid"][rows[a]] & np.isfinite(am)
            x["map_mmhg"][a] = torch.from_numpy(np.where(av, am, 0.0).astype(np.float32))
            x["map_valid"][a] = torch.from_numpy(av.astype(np.float32))
        return self._dev(x)

    def _dev(self, d: dict) -> dict:
        return {k: v.to(self.device) for k, v in d.items()}

    def phase_pretrain(self) -> None:
        from training.pretrain import pretrain_loss

        rich = self.aug["rich"]
        n_aug = self.aug["map_mmhg"].shape[0]
        while self.state["epoch"] < self.ts.pretrain_epochs and not self.over_budget():
            ep = self.state["epoch"]
            rng = np.random.default_rng(self.ts.seed * 1000 + ep)
            rows = np.concatenate([rich, np.arange(n_aug)])
            is_aug = np.concatenate([np.zeros(rich.size, bool), np.ones(n_aug, bool)])
            perm = rng.permutation(rows.size)[: self.ts.max_pretrain_windows]
            g = torch.Generator().manual_seed(self.ts.seed * 1000 + ep)
            self.model.train()
            parts_sum: dict[str, float] = {}
            nb = 0
            for i in range(0, perm.size, self.ts.batch):
                b = perm[i:i + self.ts.batch]
                if b.size < 4:
                    continue
                x = self._pretrain_batch(rows[b], is_aug[b])
                loss, parts = pretrain_loss(self.model, self.heads, x, g)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.opt.step()
                nb += 1
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v
                self.progress("pretrain", i + b.size, perm.size)
                if self.over_budget():
                    break
            self.state["epoch"] = ep + 1
            self.save_state()
            self.log(phase="pretrain", epoch=ep, batches=nb, **{k: v / max(nb, 1) for k, v in parts_sum.items()})
        self._wrap_lora()
        self._make_opt()
        self.state.update(phase="finetune", epoch=0)

    def _epoch_rows(self, ep: int) -> np.ndarray:
        lab = np.asarray(self.train["labels"])
        pos = np.nonzero((lab == 1).any(1))[0]
        neg = np.nonzero(~(lab == 1).any(1))[0]
        rng = np.random.default_rng(self.ts.seed * 7919 + ep)
        n_neg = min(neg.size, max(int(self.ts.neg_per_pos * max(pos.size, 1)), self.ts.batch))
        n_pos = pos.size
        total = n_pos + n_neg
        if total > self.ts.max_samples_per_epoch:
            f = self.ts.max_samples_per_epoch / total
            n_pos, n_neg = max(1, int(n_pos * f)), max(1, int(n_neg * f))
        rows = np.concatenate([rng.choice(pos, n_pos, replace=False) if n_pos else pos[:0],
                               rng.choice(neg, n_neg, replace=False)])
        return rows[rng.permutation(rows.size)]

    @torch.no_grad()
    def score(self, split, batch: int = 256) -> dict[str, np.ndarray]:
        """Logits of the forecaster, its fusion-LM head and the belief decoder on a whole split."""
        from training.finetune import unwrap

        self.model.eval()
        self.decoder.eval()
        base = unwrap(self.model)
        out = {"gated_fusion": [], "fusion_lm": [], "belief_decoder": []}
        for i in range(0, len(split), batch):
            idx = np.arange(i, min(i + batch, len(split)))
            x = self._dev(forecaster_inputs(split, idx, self.text))
            got = {}
            h = base.lm.head_ioh.register_forward_hook(lambda m, a, o: got.__setitem__("lm", o))
            logits, _, _ = self.model(**x)
            h.remove()
            ev = self._dev(belief_events(split, idx, self.cfg.grid_s, self.ts.belief_minutes))
            bl, _ = self.decoder(**ev, past_kv=unwrap(self.decoder).empty_past(idx.size).to(self.device))
            out["gated_fusion"].append(logits.cpu().numpy())
            out["fusion_lm"].append(got["lm"].cpu().numpy())
            out["belief_decoder"].append(bl[:, -1].cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def dev_metrics(self, logits: np.ndarray) -> dict:
        lab = np.asarray(self.dev["labels"])
        res = {}
        for j, h in enumerate(self.cfg.horizons_min):
            ok = lab[:, j] >= 0
            res[f"auprc_{h}"] = M.average_precision(lab[ok, j], logits[ok, j])
            res[f"auroc_{h}"] = M.auroc(lab[ok, j], logits[ok, j])
        res["auprc_mean"] = float(np.nanmean([res[f"auprc_{h}"] for h in self.cfg.horizons_min]))
        return res

    def phase_finetune(self) -> None:
        from training.finetune import belief_loss, finetune_loss

        while (self.state["epoch"] < self.ts.finetune_epochs and self.state["bad_epochs"] < self.ts.patience
               and not self.over_budget()):
            ep = self.state["epoch"]
            rows = self._epoch_rows(ep)
            self.model.train()
            self.decoder.train()
            sums: dict[str, float] = {}
            nb = 0
            for i in range(0, rows.size, self.ts.batch):
                b = np.sort(rows[i:i + self.ts.batch])
                if b.size < 2:
                    continue
                x = self._dev(forecaster_inputs(self.train, b, self.text))
                t = self._dev(targets(self.train, b))
                loss, parts = finetune_loss(self.model, x, t, pos_weight=self.ts.pos_weight)
                ev = self._dev(belief_events(self.train, b, self.cfg.grid_s, self.ts.belief_minutes))
                bl = belief_loss(self.decoder, ev, t, self.ts.pos_weight)
                self.opt.zero_grad()
                (loss + bl).backward()
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
                self.opt.step()
                nb += 1
                parts["belief"] = float(bl.detach())
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.progress("finetune", i + b.size, rows.size, epoch=ep)
                if self.over_budget():
                    self.state["stopped"] = f"time budget of {self.ts.max_minutes} min reached in epoch {ep}"
                    break
            dev_logits = self.score(self.dev)
            dm = self.dev_metrics(dev_logits["gated_fusion"])
            improved = dm["auprc_mean"] > self.state["best"] + 1e-4
            if improved:
                self.state["best"] = dm["auprc_mean"]
                self.state["best_epoch"] = ep
                self.state["bad_epochs"] = 0
                self.best_states = {"model": {k: v.clone() for k, v in self.model.state_dict().items()},
                                    "decoder": {k: v.clone() for k, v in self.decoder.state_dict().items()}}
            else:
                self.state["bad_epochs"] += 1
            self.state["epoch"] = ep + 1
            self.save_state()      # before the log line: a logged epoch is always in the checkpoint
            self.log(phase="finetune", epoch=ep, batches=nb, samples=int(rows.size),
                     **{k: v / max(nb, 1) for k, v in sums.items()},
                     **{f"dev_{k}": v for k, v in dm.items()}, best=improved)
        if self.state["bad_epochs"] >= self.ts.patience:
            self.state["stopped"] = f"early stop: no dev AUPRC gain for {self.ts.patience} epochs"
        self.log(phase="finetune", done=True, best_dev_auprc_mean=self.state["best"],
                 best_epoch=self.state.get("best_epoch"), stopped=self.state["stopped"])
        self.state.update(phase="calibrate", epoch=0)

    def phase_calibrate(self) -> None:
        from training.finetune import fit_platt

        if self.best_states is not None:
            self.model.load_state_dict(self.best_states["model"])
            self.decoder.load_state_dict(self.best_states["decoder"])
        logits = self.score(self.dev)
        lab = np.asarray(self.dev["labels"])
        self.calibration = {}
        for name, z in logits.items():
            a_s, b_s = [], []
            for j, h in enumerate(self.cfg.horizons_min):
                ok = lab[:, j] >= 0
                n_pos = int(lab[ok, j].sum())
                if n_pos < 5 or ok.sum() - n_pos < 5:
                    self.log(phase="calibrate", model=name, horizon=h,
                             skipped=f"dev has {n_pos} positives of {int(ok.sum())}; identity calibration")
                    a_s.append(1.0)
                    b_s.append(0.0)
                    continue
                a, b = fit_platt(z[ok, j], lab[ok, j])
                a_s.append(a)
                b_s.append(b)
                p = 1 / (1 + np.exp(-(a * z[ok, j] + b)))
                self.log(phase="calibrate", model=name, horizon=h, platt_a=a, platt_b=b,
                         dev_brier=M.brier(lab[ok, j], p), dev_auroc=M.auroc(lab[ok, j], z[ok, j]),
                         dev_auprc=M.average_precision(lab[ok, j], z[ok, j]))
            self.calibration[name] = {"platt_a": a_s, "platt_b": b_s,
                                      "fitted": any(a != 1.0 or b != 0.0 for a, b in zip(a_s, b_s))}
        self.state.update(phase="export")

    def phase_export(self) -> None:
        from models.export import export_engines, save_checkpoint
        from training.finetune import unwrap

        if self.best_states is not None:
            self.model.load_state_dict(self.best_states["model"])
            self.decoder.load_state_dict(self.best_states["decoder"])
        gf = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        dec = self.decoder.merge_and_unload() if hasattr(self.decoder, "merge_and_unload") else self.decoder
        gf, dec = gf.cpu(), dec.cpu()
        version = f"{self.cfg.name}-{self.meta['data_hash'][:8]}-s{self.ts.seed}"
        ck = save_checkpoint(self.out / "checkpoint.pt", self.cfg,
                             {"gated_fusion": unwrap(gf), "fusion_lm": unwrap(gf).lm, "belief_decoder": unwrap(dec)},
                             calibration=self.calibration, training_data_hash=self.meta["data_hash"],
                             version=version)
        manifest = export_engines(self.out / "engine", self.cfg, checkpoint=ck, fp16=False,
                                  models=("gated_fusion", "fusion_lm", "belief_decoder"), seed=self.ts.seed)
        self.log(phase="export", engine=str(self.out / "engine"), version=manifest.version,
                 trained=manifest.trained)
        self.state.update(phase="done")


def provenance(cohort_meta: dict, ts: TrainSettings, cfg) -> dict:
    from models.export import git_sha, library_versions

    return {"train_settings": asdict(ts), "model_config": cfg.to_dict(), "seed": ts.seed,
            "cohort_data_hash": cohort_meta["data_hash"], "cohort_summary": cohort_meta["summary"],
            "git_sha": git_sha(), "libraries": library_versions()}


def train(cohort: Path, out: Path, ts: TrainSettings, resume: bool = False,
          progress: Callable | None = None) -> dict:
    """Run (or resume) every phase; returns the final ``run.json`` content."""
    out = Path(out)
    if out.exists() and (out / "state.pt").exists() and not resume:
        raise FileExistsError(f"train: {out} already holds a run; pass --resume to continue it or pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    run = Run(cohort, out, ts, progress)
    if resume and (out / "state.pt").exists():
        prev = json.loads((out / "run.json").read_text())
        if prev["cohort_data_hash"] != run.meta["data_hash"]:
            raise ValueError(f"train: {out} was trained on cohort {prev['cohort_data_hash'][:12]}, "
                             f"not {run.meta['data_hash'][:12]}; refusing to resume on other data")
        run.load_state()
    else:
        (out / "run.json").write_text(json.dumps(provenance(run.meta, ts, run.cfg), indent=1, default=float) + "\n")
        run.log(event="start", config=ts.config, seed=ts.seed, cohort=str(cohort),
                train_samples=len(run.train), dev_samples=len(run.dev))
    steps = {"augment": run.phase_augment, "pretrain": run.phase_pretrain, "finetune": run.phase_finetune,
             "calibrate": run.phase_calibrate, "export": run.phase_export}
    while run.state["phase"] != "done":
        phase = run.state["phase"]
        steps[phase]()
        run.save_state()
    info = json.loads((out / "run.json").read_text())
    info.update(best_dev_auprc_mean=run.state["best"], best_epoch=run.state.get("best_epoch"),
                stopped=run.state["stopped"], elapsed_s=run.elapsed(), calibration=run.calibration)
    (out / "run.json").write_text(json.dumps(info, indent=1, default=float) + "\n")
    return info

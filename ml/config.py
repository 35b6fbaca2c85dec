"""The `ml:` section of conf/controller.yml (static settings; the live switches are flags: ml.enabled,
ml.min_confidence (a floor under the payoff threshold, `ml.payoff`), ml.veto, ml.control_share)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from controller.config_base import Frozen


class CostParams(Frozen):
    """Seed costs: taker fee 0.3 %, slippage 0.15-0.75 % by tier (SEED_SYSTEM.md §3); mid tier here."""

    fee_pct: float = Field(0.3, ge=0, le=5, description="fee per side, percent of the traded value")
    slippage_pct: float = Field(0.25, ge=0, le=5, description="slippage allowance per side, percent")


class TrainParams(Frozen):
    folds: int = Field(4, ge=2, le=20, description="walk-forward test blocks")
    min_events: int = Field(200, ge=20, description="fewer labelled events than this: refuse")
    min_minority_share: float = Field(0.05, gt=0, lt=0.5, description="a class rarer than this: refuse")
    min_minority_events: int = Field(20, ge=5, description="a class with fewer events than this: refuse")
    calibration_share: float = Field(0.2, gt=0, lt=0.5, description="latest share of a window for calibration")
    max_iter: int = Field(200, ge=10, le=2000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_leaf_nodes: int = Field(15, ge=2, le=255)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(1.0, ge=0)
    ood_neighbours: int = Field(5, ge=1, le=100, description="nearest training points the dissimilarity index "
                                                               "averages (FreqAI's DI uses 1)")
    ood_reference: int = Field(1000, ge=50, le=20_000, description="training rows kept with the model for the "
                                                                    "nearest-neighbour distance (a seeded sample)")
    drift_bins: int = Field(10, ge=3, le=50, description="quantile bins of the training distributions PSI reads")
    seed: int = 0


class GateParams(Frozen):
    """What a model must show out of sample before `ml promote` activates it (`ml.gate`)."""

    min_out_of_sample: int = Field(300, ge=30, description="fewer pooled out-of-sample entries than this: refuse")
    min_held_back: int = Field(100, ge=20, description="fewer held-back-asset entries than this: refuse")
    held_back_share: float = Field(0.25, gt=0, lt=0.5, description="share of base assets held back from training")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided level of the AUC interval; the edge's "
                                                               "lower bound is its one-sided counterpart")
    family_alpha: float = Field(0.05, gt=0, lt=0.5, description="Holm level across the strategies of one retrain")
    resamples: int = Field(2000, ge=200, le=100_000, description="bootstrap resamples of the edge")


class RetrainConfig(Frozen):
    enabled: bool = Field(False, description="run the retrainer beside `run` (its own thread and timeout)")
    replay: Path | None = Field(None, description="folder of recorded candles the retrainer trains on (none: off)")
    interval_h: float = Field(24.0, gt=0, le=24 * 30, description="retrain at least this often")
    min_new_labels: int = Field(50, ge=1, description="or as soon as this many new labels (closed trades) exist")
    timeout_s: float = Field(1800.0, gt=0, le=6 * 3600, description="a retrain running longer is abandoned")
    check_every_s: float = Field(300.0, gt=0, description="how often the retrainer looks whether it is due")


class DriftParams(Frozen):
    """PSI of a live model's scores against its training set's (`ml.drift`); past `level`, the model is
    demoted and the reason recorded on its row."""

    level: float = Field(0.25, gt=0, le=10, description="score PSI above which the model is demoted")
    window: int = Field(500, ge=50, le=100_000, description="the last N live predictions of the model compared")
    min_predictions: int = Field(500, ge=50, description="fewer live predictions than this: measured, no verdict")
    check_every: int = Field(50, ge=1, description="measure again after this many new predictions")
    demote: bool = Field(True, description="demote past the level (false: measure and report only)")


class MlConfig(Frozen):
    model_dir: Path = Field(Path(".data/models"), description="where joblib artefacts are written")
    max_age_days: float = Field(30.0, gt=0, description="an active model older than this is stale: no effect")
    ood_max_dissimilarity: float = Field(1.0, gt=0, le=100,
                                         description="dissimilarity index (ml.novelty: mean distance to the "
                                                     "nearest training points / their mean pairwise distance) "
                                                     "above which a candidate is out of distribution: no effect")
    costs: CostParams = CostParams()
    train: TrainParams = TrainParams()
    gate: GateParams = GateParams()
    retrain: RetrainConfig = RetrainConfig()
    drift: DriftParams = DriftParams()

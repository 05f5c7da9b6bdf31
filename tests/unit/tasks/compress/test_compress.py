"""Compression: packed trees, the lean input path, each candidate, compilation and selection."""

from __future__ import annotations

import math
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import FunctionTransformer

from core.config import ConfigError
from inference.compact import (
    CompactModel,
    NotCompilable,
    booster_from_packed,
    compile_lean,
    pack_trees,
    tree_stats,
)
from inference.model import encode_target
from tasks.compress import candidates as cb
from tasks.compress.select import metric_drop, select_candidate
from tasks.preprocess import build_preprocessor, feature_frame, split_frame
from tests.conftest import ROOT, fit_on_train, lightgbm_selection, make_settings

# Stated bounds on |probability difference| against the unquantized trees.
QUANTIZATION_BOUND = {"f64": 0.0, "f32": 1e-6, "f16": 2e-3, "int8": 2e-2}
COMPILED_BOUND = 1e-9


@pytest.fixture(scope="module")
def fitted(credit: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path_factory.mktemp("compress"),
        data={"sentinels": {"Income": [99999999]}},
        compress={"student_rounds": 100, "synthetic_factor": 1.0},
    )
    df = credit.sample(1500, random_state=3).reset_index(drop=True)
    df.loc[:20, "Income"] = 99999999  # sentinel codes -> missing
    df.loc[21:40, "Job"] = None  # missing category
    parts = split_frame(df, 0.2, 0.2, settings.base.seed)
    X = feature_frame(parts["train"], "Status")
    pre = build_preprocessor(X, settings.preprocess, settings.data.sentinels).fit(X)
    # The threshold train copies from the selection (chosen on out-of-fold predictions).
    full = fit_on_train(parts["train"], pre, settings, {**lightgbm_selection(), "threshold": 0.37})
    ys = {
        k: encode_target(v["Status"], "binary", classes=full.classes)[0] for k, v in parts.items()
    }
    ctx = cb.BuildContext.create(
        full, parts["train"], parts["valid"], ys["train"], ys["valid"], settings
    )
    return settings, full, parts, ctx


def _booster(full):  # type: ignore[no-untyped-def]
    return full.estimator.booster_


def test_packed_trees_round_trip_and_shrink_with_precision(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, _ = fitted
    X = full.model_input(parts["test"]).to_numpy()
    reference = full.predict_scores(parts["test"])
    sizes = {}
    for precision, bound in QUANTIZATION_BOUND.items():
        blob = pack_trees(_booster(full), precision)
        sizes[precision] = len(blob)
        diff = np.abs(booster_from_packed(blob).predict(X) - reference).max()
        assert diff <= bound, (precision, diff)
    assert sizes["f64"] > sizes["f32"] > sizes["f16"] > sizes["int8"]
    assert tree_stats(pack_trees(_booster(full), num_iteration=5))["trees"] == 5
    with pytest.raises(ValueError, match="precision"):
        pack_trees(_booster(full), "f8")


def test_lean_path_matches_fitted_preprocessing_on_edge_rows(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, ctx = fitted
    assert ctx.lean_ok
    columns = list(ctx.X_valid.columns)
    lean = compile_lean(full.input_transformer(), columns)
    rows = cb.edge_rows(full, parts["test"])
    rows.loc[0, "Income"] = 99999999  # sentinel in a new row
    rows.loc[1, "Home"] = "martian"
    want = full.model_input(rows)[columns].to_numpy()
    got = lean.transform(rows)
    assert np.array_equal(np.isnan(want), np.isnan(got))
    assert np.allclose(np.nan_to_num(want), np.nan_to_num(got), atol=1e-12, rtol=0)
    # A subset of model inputs reads only its raw columns.
    subset = compile_lean(full.input_transformer(), ["Income", "missingindicator_Income", "Job"])
    assert subset.columns == ["Income", "Job"]
    assert subset.transform(rows[["Income", "Job"]]).shape == (len(rows), 3)


def test_unknown_preprocessing_step_falls_back_to_the_fitted_pipeline(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, ctx = fitted
    from sklearn.pipeline import Pipeline

    odd = Pipeline([("extra", FunctionTransformer()), *full.input_transformer().steps])
    with pytest.raises(NotCompilable, match="FunctionTransformer"):
        compile_lean(odd, list(ctx.X_valid.columns))
    ctx_fallback = cb.BuildContext(**{**ctx.__dict__, "lean_ok": False})
    model = cb.packed_full(ctx_fallback).model
    assert model.lean is None and model.pipeline is not None
    assert np.array_equal(model.predict_scores(parts["test"]), full.predict_scores(parts["test"]))


def test_tree_pruning_keeps_fewest_rounds_within_tolerance(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, ctx = fitted
    packed = cb.packed_full(ctx)
    pruned = cb.prune_trees(ctx, max_drop=0.01)
    assert pruned.trees < packed.trees and pruned.size_bytes < packed.size_bytes
    assert ctx.valid_drop(pruned.model.predict_scores(parts["valid"])) <= 0.01 + 1e-12
    assert not np.array_equal(
        pruned.model.predict_scores(parts["test"]), full.predict_scores(parts["test"])
    )
    assert cb.fewest_rounds([(1, 0.05), (5, 0.004), (9, 0.0), (20, 0.0)], 0.005) == 5
    assert cb.fewest_rounds([(1, 0.05), (5, 0.04)], 0.005) == 5


def test_feature_pruning_needs_fewer_raw_columns(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, ctx = fitted
    pruned = cb.prune_features(ctx, [0.5, 0.25])
    assert [b.features for b in pruned] == sorted((b.features for b in pruned), reverse=True)
    smallest = pruned[-1]
    assert smallest.features < len(full.feature_columns)
    needed = smallest.model.raw_columns
    p = smallest.model.predict_scores(parts["test"][needed])  # only the columns it reads
    assert np.allclose(p, smallest.model.predict_scores(parts["test"]))


def test_distilled_student_follows_the_teacher_better_than_hard_labels(fitted) -> None:  # type: ignore[no-untyped-def]
    settings, full, parts, ctx = fitted
    distilled = cb.distill(ctx, settings.compress, 4)
    hard = cb.hard_label_student(ctx, settings.compress, 4)
    packed = cb.packed_full(ctx)
    assert distilled.size_bytes < packed.size_bytes and distilled.leaves <= 4 * distilled.trees
    # The student learns the teacher's logits: it tracks the teacher closer than the same small
    # model trained on the labels does.
    rows = pd.concat([parts["train"], parts["test"]], ignore_index=True)
    teacher = _logit(full.predict_scores(rows))
    gap = lambda b: float(np.mean((_logit(b.model.predict_scores(rows)) - teacher) ** 2))  # noqa: E731
    assert gap(distilled) < gap(hard)
    p = distilled.model.predict_scores(parts["test"])
    assert ((p > 0) & (p < 1)).all()  # predicts through the teacher's sigmoid


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_synthetic_rows_stay_near_the_data(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, _, ctx = fitted
    X = ctx.X_train
    rows = cb.synthetic_rows(X, 500, 0.1, cb._discrete(X, ctx.categorical), seed=1)
    again = cb.synthetic_rows(X, 500, 0.1, cb._discrete(X, ctx.categorical), seed=1)
    assert rows.equals(again) and list(rows.columns) == list(X.columns)
    for col in ctx.categorical:
        assert set(rows[col].dropna()) <= set(X[col].dropna())
    assert abs(rows["Age"].mean() - X["Age"].mean()) < 3


def test_quantized_candidate_reports_parity_within_bound(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, parts, ctx = fitted
    base = cb.packed_full(ctx)
    for precision in ("f16", "int8"):
        q = cb.quantize(ctx, base, precision, parts["test"])
        assert q.size_bytes < base.size_bytes
        assert 0 < q.parity <= QUANTIZATION_BOUND[precision]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler on this machine")
def test_compiled_library_matches_and_bad_library_falls_back(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, parts, ctx = fitted
    model = cb.quantize(ctx, cb.prune_trees(ctx, 0.01), "int8", parts["test"]).model
    plain = model.predict_scores(parts["test"])
    lib = tmp_path / "m.so"
    assert cb.compile_library(model, lib, nthread=1) is None and lib.stat().st_size > 0
    assert model.attach_compiled(str(lib))
    assert np.abs(model.predict_scores(parts["test"]) - plain).max() <= COMPILED_BOUND
    out = model.predict_frame(parts["test"].head(3))
    assert list(out.columns) == ["probability", "label"]
    clone = pickle.loads(pickle.dumps(model))  # runtime handles are not pickled
    assert clone.compiled is None
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not a library")
    assert not clone.attach_compiled(str(bad))
    assert np.array_equal(clone.predict_scores(parts["test"]), plain)


def test_select_candidate_picks_smallest_within_tolerance() -> None:
    rows = [
        {"candidate": "packed", "size_bytes": 20000, "valid_drop": 0.0},
        {"candidate": "small", "size_bytes": 3000, "valid_drop": 0.004},
        {"candidate": "tiny", "size_bytes": 1000, "valid_drop": 0.02},
        {"candidate": "full", "size_bytes": 200000, "valid_drop": 0.0, "selectable": False},
        {"candidate": "broken", "size_bytes": 10, "valid_drop": math.nan},
    ]
    assert select_candidate(rows, 0.005)["candidate"] == "small"
    assert select_candidate(rows, 0.05)["candidate"] == "tiny"
    assert select_candidate(rows, 0.0)["candidate"] == "packed"
    tie = [*rows, {"candidate": "also-small", "size_bytes": 3000, "valid_drop": 0.001}]
    assert select_candidate(tie, 0.005)["candidate"] == "also-small"
    assert select_candidate(rows[2:], 0.001) is None


def test_selection_uses_the_upper_bound_of_the_drop_not_the_point() -> None:
    """A candidate whose point drop is within tolerance by luck (wide interval) is not taken;
    the bound is what must be within max_metric_drop."""
    rows = [
        {"candidate": "lucky", "size_bytes": 100, "valid_drop": 0.001, "valid_drop_bound": 0.02},
        {"candidate": "sure", "size_bytes": 500, "valid_drop": 0.003, "valid_drop_bound": 0.004},
    ]
    assert select_candidate(rows, 0.005)["candidate"] == "sure"
    assert select_candidate(rows, 0.03)["candidate"] == "lucky"
    assert select_candidate(rows[:1], 0.005) is None


def test_drop_bound_and_test_interval_come_from_the_paired_bootstrap(fitted) -> None:  # type: ignore[no-untyped-def]
    settings, _, parts, ctx = fitted
    ys = {
        k: encode_target(v["Status"], "binary", classes=ctx.full.classes)[0]
        for k, v in parts.items()
    }
    splits = cb.Splits(
        parts["train"], parts["valid"], parts["test"], ys["train"], ys["valid"], ys["test"]
    )
    rows = cb.score_built(
        ctx,
        [cb.packed_full(ctx), cb.hard_label_student(ctx, settings.compress, 2)],
        splits,
        "roc_auc",
    )
    lossless, tiny = rows
    assert lossless.valid_drop_bound == pytest.approx(0.0, abs=1e-12)  # same scores: no drop
    low, high = tiny.test_drop_ci
    point = metric_drop("roc_auc", lossless.test_metric, tiny.test_metric)
    assert low < point < high
    # the one-sided bound sits above the point drop on valid
    assert tiny.valid_drop_bound > metric_drop("roc_auc", lossless.valid_metric, tiny.valid_metric)


def test_a_failing_or_non_finite_candidate_is_dropped_with_its_reason(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, parts, ctx = fitted
    ctx.dropped.clear()

    def broken() -> cb.Built:
        raise RuntimeError("Input contains infinity")

    assert ctx.attempt("broken-student", "distill", broken) is None
    good = cb.packed_full(ctx)
    nan_model = cb.packed_full(ctx)
    ys = {
        k: encode_target(v["Status"], "binary", classes=ctx.full.classes)[0]
        for k, v in parts.items()
    }
    splits = cb.Splits(
        parts["train"], parts["valid"], parts["test"], ys["train"], ys["valid"], ys["test"]
    )
    ctx.memo[(id(nan_model.model), "valid")] = np.full(len(parts["valid"]), np.nan)
    scored = cb.score_built(ctx, [good, nan_model], splits, "roc_auc")
    assert [s.model for s in scored] == [good.model]
    reasons = dict((name, reason) for name, _, reason in ctx.dropped)
    assert "RuntimeError: Input contains infinity" in reasons["broken-student"]
    assert "non-finite" in reasons[nan_model.name]
    from tasks.compress.report import pareto_table

    table = pareto_table(scored, "roc_auc", 0.8, 0.8, None, ctx.dropped)
    assert (
        table.loc[table["candidate"] == "broken-student", "note"].item().startswith("RuntimeError")
    )
    assert not table.loc[table["candidate"] == "broken-student", "selectable"].item()
    ctx.dropped.clear()


def test_float16_leaves_that_would_overflow_are_refused() -> None:
    from inference.compact import quantize_leaves

    values = np.array([1.0, -2.5e5, 3.0])  # a regression leaf in the hundreds of thousands
    with pytest.raises(ValueError, match="exceeds float16's range"):
        quantize_leaves(values, np.array([0, 0, 1]), 2, "f16")
    int8 = quantize_leaves(values, np.array([0, 0, 1]), 2, "int8")  # scaled per tree: fits
    restored = int8["leaf_value"].astype(float) * int8["leaf_scale"][[0, 0, 1]]
    assert np.all(np.isfinite(restored))  # within half a step of each tree's scale
    np.testing.assert_allclose(restored, values, rtol=0, atol=2.5e5 / 127 / 2 + 1e-6)


def test_compression_failing_as_a_whole_leaves_a_reason_not_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.tracking import NO_RUN
    from core.io import ArtifactPaths, read_json
    from tasks.compress import stage

    def explode(*_: object) -> None:
        raise ValueError("Input contains infinity or a value too large for dtype('float32')")

    monkeypatch.setattr(stage, "compress_model", explode)
    settings = make_settings(tmp_path)
    stage.compress_stage.fn(settings, NO_RUN)
    manifest = read_json(ArtifactPaths(tmp_path).compact_manifest)
    assert manifest["enabled"] is False
    assert manifest["reason"].startswith("compression failed: ValueError: Input contains infinity")


def test_metric_drop_direction() -> None:
    assert metric_drop("roc_auc", 0.85, 0.84) == pytest.approx(0.01)
    assert metric_drop("rmse", 10.0, 10.5) == pytest.approx(0.5)
    assert metric_drop("log_loss", 0.4, 0.3) == pytest.approx(-0.1)


def test_compress_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="feature_fractions"):
        make_settings(tmp_path, compress={"feature_fractions": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="compress.quantize"):
        make_settings(tmp_path, compress={"quantize": ["int4"]})
    assert make_settings(tmp_path, compress={"enabled": False}).compress.enabled is False


def test_compact_model_module_does_not_import_prefect() -> None:
    code = (
        "import sys, inference.compact, inference.compact_pyfunc; "
        "assert 'prefect' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_compact_model_is_an_inference_model(fitted) -> None:  # type: ignore[no-untyped-def]
    _, full, parts, ctx = fitted
    model = cb.packed_full(ctx).model
    assert isinstance(model, CompactModel)
    assert sorted(model.raw_columns) == sorted(full.feature_columns)
    out = model.predict_frame(parts["test"])
    assert np.array_equal(out["probability"], full.predict_frame(parts["test"])["probability"])
    # Candidates keep the full model's threshold: choosing one on the valid split would use the
    # rows their drop is measured on.
    assert model.threshold == full.threshold == 0.37
    assert ((out["probability"] >= model.threshold) == (out["label"] == "bad")).all()


def test_disabled_stage_writes_markers_and_registers_nothing(tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    from adapters.tracking import NO_RUN
    from core.io import ArtifactPaths, read_json
    from tasks.compress.stage import compress_stage
    from tasks.register.compact import register_compact

    settings = make_settings(tmp_path, compress={"enabled": False})
    compress_stage.fn(settings, NO_RUN)
    paths = ArtifactPaths(tmp_path)
    off = {"enabled": False, "reason": "compress.enabled: false"}  # says why there is none
    assert read_json(paths.compact_manifest) == off
    assert read_json(paths.compress_metrics) == off
    assert pd.read_csv(paths.compress_reports / "pareto.csv").empty

    class NoCompactModel:
        def get_registered_model(self, name: str) -> None:
            raise MlflowException(f"{name} not found")

    assert register_compact(settings, NoCompactModel(), "3", None, {}) is None
    assert register_compact(settings, NoCompactModel(), None, None, {}) is None


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "regression"])
def test_staged_predictions_match_predicting_each_prefix(task_type: str) -> None:
    """Each tree evaluated once, yet the same predictions as predict(num_iteration=k)."""
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = {
        "binary": (X[:, 0] > 0).astype(int),
        "multiclass": np.digitize(X[:, 0], [-0.5, 0.5]),
        "regression": X[:, 0] * 2 + rng.normal(size=300),
    }[task_type]
    params = {"objective": task_type, "verbosity": -1, "num_leaves": 4, "seed": 0}
    if task_type == "multiclass":
        params["num_class"] = 3
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=25)
    grid = [1, 2, 7, 13, 25]
    staged = list(cb.staged_predictions(booster, X, grid, task_type))
    assert [k for k, _ in staged] == grid
    for k, pred in staged:
        np.testing.assert_allclose(pred, booster.predict(X, num_iteration=k), rtol=1e-9, atol=1e-12)


def test_retrained_candidates_fit_on_a_seeded_stratified_sample(fitted) -> None:  # type: ignore[no-untyped-def]
    settings, full, parts, ctx = fitted
    small = settings.model_copy(
        update={"compress": settings.compress.model_copy(update={"retrain_rows": 300})}
    )
    ys = {
        k: encode_target(v["Status"], "binary", classes=full.classes)[0] for k, v in parts.items()
    }
    sampled = cb.BuildContext.create(
        full, parts["train"], parts["valid"], ys["train"], ys["valid"], small
    )
    again = cb.BuildContext.create(
        full, parts["train"], parts["valid"], ys["train"], ys["valid"], small
    )
    assert len(ctx.X_train) == len(parts["train"]) > 300 == len(sampled.X_train)
    assert sampled.X_train.index.equals(again.X_train.index)  # seeded
    assert abs(sampled.y_train.mean() - ys["train"].mean()) < 0.01  # stratified
    assert len(sampled.X_valid) == len(ctx.X_valid)  # valid is never sampled


def test_text_columns_give_the_same_codes_arrow_backed_or_object(fitted) -> None:  # type: ignore[no-untyped-def]
    _settings, full, parts, ctx = fitted
    lean = compile_lean(full.input_transformer(), list(ctx.X_valid.columns))
    rows = cb.edge_rows(full, parts["valid"].drop(columns=["Status"]), n=60)
    text = [c for c in rows.columns if not pd.api.types.is_numeric_dtype(rows[c])]
    as_object = rows.astype(dict.fromkeys(text, object))
    as_arrow = rows.astype(dict.fromkeys(text, "str"))
    assert all(str(as_arrow[c].dtype) == "str" for c in text) and text
    np.testing.assert_array_equal(lean.transform(as_arrow), lean.transform(as_object))
    want = full.model_input(as_object)[list(ctx.X_valid.columns)].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(lean.transform(as_arrow), want, rtol=0, atol=1e-9)


def test_an_ensemble_gets_small_students_only(fitted) -> None:  # type: ignore[no-untyped-def]
    """Tree and feature pruning and quantizing the full model need one LightGBM model; an
    ensemble is compressed by students that learn its blended output."""
    from inference.ensemble import WeightedEnsemble

    settings, _, parts, _ = fitted
    X = feature_frame(parts["train"], "Status")
    pre = build_preprocessor(X, settings.preprocess, settings.data.sentinels).fit(X)
    selection = lightgbm_selection(rounds=30)
    selection["members"][0]["weight"] = 0.6
    selection["members"].append(
        {"name": "linear", "kind": "linear", "params": {"C": 1.0}, "rounds": None, "weight": 0.4}
    )
    ensemble = fit_on_train(parts["train"], pre, settings, selection)
    assert isinstance(ensemble.estimator, WeightedEnsemble) and not ensemble.is_single_lightgbm
    ys = {
        k: encode_target(v["Status"], "binary", classes=ensemble.classes)[0]
        for k, v in parts.items()
    }
    ctx = cb.BuildContext.create(
        ensemble, parts["train"], parts["valid"], ys["train"], ys["valid"], settings
    )
    built = cb.base_candidates(ctx, settings.compress)
    leaves = settings.compress.student_leaves
    assert [b.kind for b in built] == ["distill", "hard_labels"] * len(leaves)
    assert [b.name for b in built[::2]] == [f"distilled-{n}leaves" for n in leaves]
    splits = cb.Splits(
        parts["train"], parts["valid"], parts["test"], ys["train"], ys["valid"], ys["test"]
    )
    quantized = cb.quantized_candidates(ctx, settings.compress, built, splits)
    assert all(q.name.split("+")[0] in {b.name for b in built} for q in quantized)
    # The student learns the ensemble's blended log-odds, not one member's.
    rows = pd.concat([parts["train"], parts["test"]], ignore_index=True)
    teacher = _logit(np.clip(ensemble.predict_scores(rows), 1e-7, 1 - 1e-7))
    student = _logit(built[0].model.predict_scores(rows))
    assert np.corrcoef(teacher, student)[0, 1] > 0.9

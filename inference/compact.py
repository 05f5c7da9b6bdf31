"""Compact models: packed LightGBM trees, a lean input path, optional compiled predictor.

Everything here travels inside the registered `<name>-compact` model, so it imports neither
Prefect nor MLflow. A CompactModel still takes raw rows:

- `LeanInput` replays the full model's fitted preprocessing (sentinel codes, imputation values,
  missing indicators, scaling, ordinal category tables) with numpy and dicts, reading only the
  raw columns its trees use. It is compiled from the fitted scikit-learn objects; a step it does
  not know makes `compile_lean` raise NotCompilable and the model falls back to the fitted
  preprocessing.
- The trees are stored packed (`pack_trees`: the arrays LightGBM predicts with, nothing else, at a
  chosen precision, zlib-compressed) and rebuilt into a LightGBM booster on load.
- A treelite/tl2cgen shared library can be attached (`attach_compiled`); if it cannot be loaded
  the LightGBM booster predicts instead.
"""

from __future__ import annotations

import logging
import math
import pickle
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, StandardScaler

from inference.errors import DataError, preview
from inference.model import InferenceModel
from inference.transformers import FeatureBuilder, SentinelMapper

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Packed trees
# ---------------------------------------------------------------------------------------------

PRECISIONS = ("f64", "f32", "f16", "int8")
_TREE_KEYS = (
    "num_leaves",
    "num_cat",
    "split_feature",
    "threshold",
    "decision_type",
    "left_child",
    "right_child",
    "leaf_value",
    "cat_boundaries",
    "cat_threshold",
)
_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "feature_names",
    "feature_infos",
)


def _parse_model_text(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """LightGBM's model text -> header fields and one dict of fields per tree."""
    body = text.split("end of trees", 1)[0]
    blocks = body.split("\nTree=")
    header = dict(line.split("=", 1) for line in blocks[0].splitlines() if "=" in line)
    trees = []
    for block in blocks[1:]:
        fields = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)
        trees.append(fields)
    return header, trees


def _ints(value: str | None) -> list[int]:
    return [int(v) for v in value.split()] if value else []


def _floats(value: str | None) -> list[float]:
    return [float(v) for v in value.split()] if value else []


def _small_int(values: np.ndarray, signed: bool = False) -> np.ndarray:
    """The narrowest integer dtype that holds the values exactly."""
    for dtype in (np.int8, np.int16, np.int32) if signed else (np.uint8, np.uint16, np.uint32):
        info = np.iinfo(dtype)
        if values.size == 0 or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(dtype)
    return values.astype(np.int64)


def quantize_leaves(
    values: np.ndarray, tree_of_leaf: np.ndarray, n_trees: int, precision: str
) -> dict[str, np.ndarray]:
    """Leaf values at `precision`; int8 uses one float32 scale per tree (max |value| -> 127)."""
    if precision == "f64":
        return {"leaf_value": values.astype(np.float64)}
    if precision == "f32":
        return {"leaf_value": values.astype(np.float32)}
    if precision == "f16":
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        if largest > float(np.finfo(np.float16).max):
            raise ValueError(
                f"a leaf value of {largest:.4g} exceeds float16's range (65504); "
                "int8 with a per-tree scale keeps it"
            )
        return {"leaf_value": values.astype(np.float16)}
    peak = np.zeros(n_trees)
    np.maximum.at(peak, tree_of_leaf, np.abs(values))
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(values / scale[tree_of_leaf]), -127, 127).astype(np.int8)
    return {"leaf_value": q, "leaf_scale": scale}


def dequantized_leaves(packed: dict[str, Any]) -> np.ndarray:
    values = packed["leaf_value"].astype(np.float64)
    if "leaf_scale" in packed:
        tree_of_leaf = np.repeat(
            np.arange(len(packed["num_leaves"])), packed["num_leaves"].astype(np.int64)
        )
        values = values * packed["leaf_scale"].astype(np.float64)[tree_of_leaf]
    return values


def pack_trees(
    booster: lgb.Booster,
    precision: str = "f64",
    num_iteration: int | None = None,
    objective: str | None = None,
) -> bytes:
    """The arrays a LightGBM model predicts with, at `precision`, pickled and zlib-compressed.

    f64 is lossless. f32/f16/int8 round the leaf values (and numeric split thresholds to float32);
    the caller verifies the predictions against the original. `objective` overrides the header's
    (a distilled student trained on raw scores predicts with the teacher's link function).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    header, trees = _parse_model_text(booster.model_to_string(num_iteration=num_iteration or -1))
    head = {k: header[k] for k in _HEADER_KEYS if k in header}
    if objective is not None:
        head["objective"] = objective
    cols: dict[str, list[Any]] = {k: [] for k in _TREE_KEYS}
    for tree in trees:
        cols["num_leaves"].append(int(tree["num_leaves"]))
        cols["num_cat"].append(int(tree.get("num_cat", 0)))
        for key in (
            "split_feature",
            "decision_type",
            "left_child",
            "right_child",
            "cat_boundaries",
            "cat_threshold",
        ):
            cols[key] += _ints(tree.get(key))
        cols["threshold"] += _floats(tree.get("threshold"))
        cols["leaf_value"] += _floats(tree.get("leaf_value"))
    num_leaves = np.asarray(cols["num_leaves"], dtype=np.int64)
    packed: dict[str, Any] = {
        "header": head,
        "num_leaves": _small_int(num_leaves),
        "num_cat": _small_int(np.asarray(cols["num_cat"], dtype=np.int64)),
        "split_feature": _small_int(np.asarray(cols["split_feature"], dtype=np.int64)),
        "decision_type": _small_int(np.asarray(cols["decision_type"], dtype=np.int64)),
        "left_child": _small_int(np.asarray(cols["left_child"], dtype=np.int64), signed=True),
        "right_child": _small_int(np.asarray(cols["right_child"], dtype=np.int64), signed=True),
        "cat_boundaries": _small_int(np.asarray(cols["cat_boundaries"], dtype=np.int64)),
        "cat_threshold": _small_int(np.asarray(cols["cat_threshold"], dtype=np.int64)),
    }
    thresholds = np.asarray(cols["threshold"], dtype=np.float64)
    packed["threshold"] = thresholds if precision == "f64" else thresholds.astype(np.float32)
    leaves = np.asarray(cols["leaf_value"], dtype=np.float64)
    tree_of_leaf = np.repeat(np.arange(len(num_leaves)), num_leaves)
    packed.update(quantize_leaves(leaves, tree_of_leaf, len(num_leaves), precision))
    return zlib.compress(pickle.dumps(packed, protocol=pickle.HIGHEST_PROTOCOL), 9)


def _join(values: np.ndarray) -> str:
    return " ".join(repr(v) for v in values.tolist())


def unpack_model_text(blob: bytes) -> str:
    """Packed trees -> a LightGBM model text with only the fields prediction needs."""
    packed = pickle.loads(zlib.decompress(blob))
    leaves = dequantized_leaves(packed)
    thresholds = packed["threshold"].astype(np.float64)
    num_leaves = packed["num_leaves"].astype(np.int64)
    num_cat = packed["num_cat"].astype(np.int64)
    lines = ["tree"] + [f"{k}={v}" for k, v in packed["header"].items()] + [""]
    split_at = leaf_at = cat_at = cat_thr_at = 0
    for t, (n_leaf, n_cat) in enumerate(zip(num_leaves, num_cat)):
        n_split = n_leaf - 1
        s = slice(split_at, split_at + n_split)
        lines += [f"Tree={t}", f"num_leaves={n_leaf}", f"num_cat={n_cat}"]
        if n_split > 0:
            lines += [
                f"split_feature={_join(packed['split_feature'][s])}",
                f"threshold={_join(thresholds[s])}",
                f"decision_type={_join(packed['decision_type'][s])}",
                f"left_child={_join(packed['left_child'][s])}",
                f"right_child={_join(packed['right_child'][s])}",
            ]
        lines.append(f"leaf_value={_join(leaves[leaf_at : leaf_at + n_leaf])}")
        if n_cat > 0:
            bounds = packed["cat_boundaries"][cat_at : cat_at + n_cat + 1].astype(np.int64)
            lines += [
                f"cat_boundaries={_join(bounds)}",
                "cat_threshold="
                + _join(packed["cat_threshold"][cat_thr_at : cat_thr_at + bounds[-1]]),
            ]
            cat_at += n_cat + 1
            cat_thr_at += int(bounds[-1])
        lines += ["is_linear=0", "shrinkage=1", "", ""]
        split_at += n_split
        leaf_at += n_leaf
    lines += ["end of trees", "", "pandas_categorical:null", ""]
    return "\n".join(lines)


def booster_from_packed(blob: bytes) -> lgb.Booster:
    return lgb.Booster(model_str=unpack_model_text(blob))


def tree_stats(blob: bytes) -> dict[str, int]:
    packed = pickle.loads(zlib.decompress(blob))
    return {
        "trees": len(packed["num_leaves"]),
        "leaves": int(packed["num_leaves"].astype(np.int64).sum()),
    }


# ---------------------------------------------------------------------------------------------
# Lean input path
# ---------------------------------------------------------------------------------------------


class NotCompilable(Exception):
    """The fitted preprocessing holds a step the lean path does not replay."""


@dataclass
class ColumnRecipe:
    """How one model-input column is computed from one raw column."""

    source: str
    indicator: bool = False  # 1.0 where the (sentinel-mapped) value is missing
    fill: Any = None  # imputation value for missing
    mapping: dict[Any, float] | None = None  # categorical level -> ordinal code (else NaN)
    affine: tuple[float, float] | None = None  # x * a + b (scaling)
    # FeatureBuilder: `left <op> right` of two other recipes' values, and clipping bounds.
    derived: tuple[ColumnRecipe, ColumnRecipe, str] | None = None
    clip: tuple[float, float] | None = None


def _step_list(obj: Any) -> list[Any]:
    if isinstance(obj, Pipeline):
        return [s for _, step in obj.steps for s in _step_list(step)]
    return [obj]


def _column_recipes(trans: Any, cols: list[str]) -> list[ColumnRecipe]:
    """Recipes for the outputs of one ColumnTransformer entry, in output order."""
    if isinstance(trans, str) and trans == "drop":
        return []
    recipes = [ColumnRecipe(c) for c in cols]
    indicators: list[ColumnRecipe] = []
    steps = [] if isinstance(trans, str) and trans == "passthrough" else _step_list(trans)
    for step in steps:
        if isinstance(step, SimpleImputer):
            if step.add_indicator:
                indicators += [
                    ColumnRecipe(cols[i], indicator=True) for i in step.indicator_.features_
                ]
            kept = []
            for r, stat in zip(recipes, step.statistics_):
                empty = stat is None or (isinstance(stat, float) and math.isnan(stat))
                if empty and not step.keep_empty_features:
                    continue
                r.fill = 0.0 if empty else (stat.item() if hasattr(stat, "item") else stat)
                kept.append(r)
            recipes = kept
        elif isinstance(step, OrdinalEncoder):
            if not (
                isinstance(step.unknown_value, float) and math.isnan(step.unknown_value)
            ) or not (
                isinstance(step.encoded_missing_value, float)
                and math.isnan(step.encoded_missing_value)
            ):
                raise NotCompilable("OrdinalEncoder must map unknown and missing values to NaN")
            for r, cats in zip(recipes, step.categories_):
                r.mapping = {
                    c: float(i)
                    for i, c in enumerate(cats.tolist())
                    if not (c is None or (isinstance(c, float) and math.isnan(c)))
                }
        elif isinstance(step, StandardScaler):
            for r, mean, scale in zip(
                recipes, _or(step.mean_, len(recipes), 0.0), _or(step.scale_, len(recipes), 1.0)
            ):
                r.affine = _compose(r.affine, 1.0 / scale, -mean / scale)
        elif isinstance(step, MinMaxScaler):
            if step.clip:
                raise NotCompilable("MinMaxScaler(clip=True)")
            for r, scale, low in zip(recipes, step.scale_, step.min_):
                r.affine = _compose(r.affine, float(scale), float(low))
        else:
            raise NotCompilable(f"{type(step).__name__} in the preprocessing")
        if (
            any(r.mapping is not None for r in recipes)
            and not isinstance(step, OrdinalEncoder)
            and not isinstance(step, SimpleImputer)
        ):
            raise NotCompilable("a step after the ordinal encoder")
    return recipes + indicators


def _or(values: Any, n: int, default: float) -> list[float]:
    return [default] * n if values is None else [float(v) for v in values]


def _compose(first: tuple[float, float] | None, a: float, b: float) -> tuple[float, float]:
    if first is None:
        return (float(a), float(b))
    return (first[0] * a, first[1] * a + b)


def _factorized_codes(
    series: pd.Series, mapping: dict[Any, float], fill: Any, sentinels: tuple[Any, ...] | None
) -> np.ndarray:
    """Ordinal codes of a raw text column: unknown levels NaN, missing values (and sentinel
    codes, as in `_column`) the code of `fill` when there is one. pandas factorizes the column
    in C (Arrow-backed or object) and only the distinct levels go through the dict: at 1M rows
    0.02-0.08 s per column, against 0.34 s for a hash lookup per value."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    sent = set(sentinels or ())
    missing = mapping.get(fill, np.nan) if fill is not None else np.nan
    table = np.array(
        [missing if _is_sentinel(u, sent) else mapping.get(u, np.nan) for u in uniques.tolist()]
        + [missing],
        dtype=np.float64,
    )
    return table[codes]  # NA -> -1 -> the last entry (missing)


def _is_sentinel(value: Any, sentinels: set[Any]) -> bool:
    try:
        return value in sentinels
    except TypeError:  # unhashable: not a sentinel
        return False


@dataclass
class LeanInput:
    """The fitted preprocessing as numpy/dict lookups for the columns the trees read."""

    recipes: list[ColumnRecipe]
    sentinels: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    numeric: dict[str, bool] = field(default_factory=dict)  # raw column -> numeric role

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(s for r in self.recipes for s in _sources(r)))

    def transform(self, rows: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(rows), len(self.recipes)), dtype=np.float64)
        cache: dict[str, np.ndarray] = {}
        for j, r in enumerate(self.recipes):
            x = self._value(rows, r, cache)
            out[:, j] = x if r.clip is None else np.clip(x, r.clip[0], r.clip[1])
        return out

    def _value(
        self, rows: pd.DataFrame, r: ColumnRecipe, cache: dict[str, np.ndarray]
    ) -> np.ndarray:
        """The preprocessed (unclipped) value of one recipe, as FeatureBuilder sees it."""
        if r.derived is not None:
            left, right, op = r.derived
            a, b = self._value(rows, left, cache), self._value(rows, right, cache)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                if op == "ratio":
                    x = a / np.where(b != 0, b, np.nan)
                elif op == "difference":
                    x = a - b
                elif op == "sum":
                    x = a + b
                else:
                    x = a * b
            return np.where(np.isfinite(x), x, np.nan)
        if r.mapping is not None:
            if r.source not in rows.columns:
                self._column(rows, r.source)  # raises the missing-column DataError
            return _factorized_codes(
                rows[r.source], r.mapping, r.fill, self.sentinels.get(r.source)
            )
        values = cache.get(r.source)
        if values is None:
            values = cache[r.source] = self._column(rows, r.source)
        x = values
        if r.indicator:
            return np.isnan(x).astype(np.float64)
        if r.fill is not None:
            x = np.where(np.isnan(x), float(r.fill), x)
        if r.affine is not None:
            x = x * r.affine[0] + r.affine[1]
        return x

    def _column(self, rows: pd.DataFrame, name: str) -> np.ndarray:
        try:
            raw = rows[name].to_numpy()
        except KeyError:
            raise DataError(f"input is missing required column(s): {preview([name])}") from None
        codes = self.sentinels.get(name)
        if self.numeric.get(name, True):
            try:
                x = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError):
                x = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
                bad = pd.Series(raw)[np.isnan(x) & ~pd.isna(pd.Series(raw))]
                if len(bad):
                    raise DataError(
                        f"column {name!r} must be numeric, got {preview(bad.unique())}"
                    ) from None
            if codes:
                x = np.where(
                    np.isin(x, np.asarray([c for c in codes if _numeric(c)], dtype=np.float64)),
                    np.nan,
                    x,
                )
            return x
        values = np.asarray(raw, dtype=object)
        if codes:
            values = np.where(
                pd.Series(values).isin(list(codes)).to_numpy(), np.array(None), values
            )
        return values


def _sources(r: ColumnRecipe) -> list[str]:
    if r.derived is None:
        return [r.source]
    return _sources(r.derived[0]) + _sources(r.derived[1])


def _feature_recipes(
    builder: FeatureBuilder, by_name: dict[str, ColumnRecipe]
) -> dict[str, ColumnRecipe]:
    """The fitted FeatureBuilder's outputs (derived columns, clipping) as recipes."""
    out = dict(by_name)
    for name, left, right, op in builder.derived:
        if left not in by_name or right not in by_name:
            raise NotCompilable(f"derived feature {name!r} reads a column the lean path lacks")
        out[name] = ColumnRecipe(name, derived=(by_name[left], by_name[right], op))
    clipped = {}
    for col, bounds in builder.clip_bounds_.items():
        if col not in out:
            raise NotCompilable(f"clipped column {col!r} is not a feature")
        # a copy: derived features read the unclipped value, as FeatureBuilder.transform does
        clipped[col] = replace(out[col], clip=(float(bounds[0]), float(bounds[1])))
    out.update(clipped)
    return {c: out[c] for c in builder.columns_ if c in out}


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compile_lean(transformer: Any, input_columns: list[str]) -> LeanInput:
    """A LeanInput for the named model-input columns of a fitted preprocessing pipeline.

    Raises NotCompilable for a structure or step it does not replay (the caller falls back to the
    fitted preprocessing); the caller also verifies parity on real rows.
    """
    steps = _step_list(transformer)
    sentinels: dict[str, tuple[Any, ...]] = {}
    columns: ColumnTransformer | None = None
    builder: FeatureBuilder | None = None
    for step in steps:
        if builder is not None:
            raise NotCompilable(f"{type(step).__name__} after the feature builder")
        if isinstance(step, SentinelMapper):
            if columns is not None:
                raise NotCompilable("sentinel mapping after the column transformer")
            sentinels.update({k: tuple(v) for k, v in (step.sentinels or {}).items()})
        elif isinstance(step, ColumnTransformer) and columns is None:
            columns = step
        elif isinstance(step, FeatureBuilder) and columns is not None:
            builder = step
        else:
            raise NotCompilable(f"{type(step).__name__} in the preprocessing")
    if columns is None:
        raise NotCompilable("no ColumnTransformer in the preprocessing")
    recipes: list[ColumnRecipe] = []
    numeric: dict[str, bool] = {}
    for name, trans, cols in columns.transformers_:
        cols = list(cols)
        if name == "remainder" and isinstance(trans, str) and trans == "drop":
            continue
        part = _column_recipes(trans, cols)
        for r in part:
            numeric.setdefault(r.source, r.mapping is None)
            if r.mapping is not None:
                numeric[r.source] = False
        recipes += part
    names = list(columns.get_feature_names_out())
    if len(names) != len(recipes):
        raise NotCompilable(f"{len(recipes)} recipes for {len(names)} output columns")
    by_name = dict(zip(names, recipes))
    if builder is not None:
        by_name = _feature_recipes(builder, by_name)
    missing = [c for c in input_columns if c not in by_name]
    if missing:
        raise NotCompilable(f"model input columns {missing} are not preprocessing outputs")
    chosen = [by_name[c] for c in input_columns]
    used = {src for r in chosen for src in _sources(r)}
    return LeanInput(
        chosen,
        {k: v for k, v in sentinels.items() if k in used},
        {k: v for k, v in numeric.items() if k in used},
    )


# ---------------------------------------------------------------------------------------------
# The compact model
# ---------------------------------------------------------------------------------------------


@dataclass
class CompactModel(InferenceModel):
    """Raw rows in, like InferenceModel; packed trees, lean inputs, optional compiled predictor.

    `pipeline` holds the full model's fitted preprocessing when `lean` is None (else None: the
    lean path replaces it); `input_columns` are the model-input columns the trees read, in order.
    """

    name: str = ""
    input_columns: list[str] = field(default_factory=list)
    trees: bytes = b""
    lean: LeanInput | None = None

    def input_transformer(self) -> Any:
        return self.pipeline

    def model_input(self, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.input_matrix(rows), columns=self.input_columns, index=rows.index)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_rt_")}

    @property
    def booster(self) -> lgb.Booster:
        booster = self.__dict__.get("_rt_booster")
        if booster is None:
            booster = self.__dict__["_rt_booster"] = booster_from_packed(self.trees)
        return booster

    @property
    def compiled(self) -> Any | None:
        return self.__dict__.get("_rt_compiled")

    def attach_compiled(self, libpath: str, nthread: int = 1) -> bool:
        """Predict with a tl2cgen shared library; False (LightGBM predicts) if it cannot load."""
        try:
            import tl2cgen

            predictor = tl2cgen.Predictor(str(libpath), nthread=nthread)
            if predictor.num_feature != len(self.input_columns):
                raise ValueError(
                    f"library expects {predictor.num_feature} features, the model "
                    f"has {len(self.input_columns)}"
                )
        except Exception as exc:  # no runtime, wrong platform, corrupt file: fall back
            log.warning(
                "compact model: compiled library %s not usable (%s: %s); using LightGBM",
                libpath,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            self.__dict__.pop("_rt_compiled", None)
            return False
        self.__dict__["_rt_compiled"] = predictor
        return True

    def detach_compiled(self) -> None:
        self.__dict__.pop("_rt_compiled", None)

    @property
    def raw_columns(self) -> list[str]:
        """The raw columns a caller must send (fewer after feature pruning)."""
        return self.lean.columns if self.lean is not None else list(self.feature_columns)

    def input_matrix(self, rows: pd.DataFrame) -> np.ndarray:
        """The model-input columns the trees read, as a float matrix."""
        if self.lean is not None:
            return self.lean.transform(rows)
        frame = self.pipeline.transform(self._features(rows))
        return frame[self.input_columns].to_numpy(dtype=np.float64)

    def predict_scores(self, rows: pd.DataFrame) -> np.ndarray:
        return self.scores_from_input(self.input_matrix(rows))

    def scores_from_input(self, X: np.ndarray) -> np.ndarray:
        compiled = self.compiled
        if compiled is not None:
            import tl2cgen

            out = np.asarray(compiled.predict(tl2cgen.DMatrix(X, dtype="float64")))
            out = out.reshape(len(X), -1)
            return out[:, 0] if out.shape[1] == 1 else out
        # One thread for small requests: OpenMP start-up costs more than it saves on a few rows.
        threads = 1 if len(X) < 1024 else 0
        return np.asarray(self.booster.predict(X, num_threads=threads), dtype=float)

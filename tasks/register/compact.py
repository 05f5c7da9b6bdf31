"""Registration of the compact model (`<model_name>-compact`), next to the full model's version.

Called by the register stage after the full model's version got its alias: models/compact (built
by `compress`) is logged and registered, tagged with the full version it came from, and its
`@champion` / `@challenger` aliases follow the full model's under the same registry lock.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from adapters.registry import (
    CHALLENGER,
    CHAMPION,
    REGISTRATION_COMPLETE,
    RegistryLock,
    alias_version,
    create_version,
    input_signature,
    log_pyfunc_model,
    model_exists,
    pip_requirements,
)
from core.config import Settings
from core.io import ArtifactPaths, file_md5, load_joblib, read_json, read_parquet
from inference.compact import CompactModel

log = logging.getLogger(__name__)


def compact_model_name(settings: Settings) -> str:
    return f"{settings.register_.model_name}-compact"


def compact_signature(model: CompactModel, rows: pd.DataFrame) -> Any:
    """All raw feature columns (like the full model), optional where the compact model does not
    read them: callers may send the full model's rows or only the columns it needs."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    full = input_signature(rows, model.predict_frame(rows))  # the full model's column types
    needed = set(model.raw_columns)
    inputs = Schema(
        [ColSpec(c.type, c.name, required=c.name in needed) for c in full.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=full.outputs)


def sync_compact_aliases(client: Any, settings: Settings) -> dict[str, str]:
    """Point `<name>-compact@champion/@challenger` at the compact version made from the full
    model's @champion/@challenger; remove the alias where that full version has none.

    Runs under the registry lock of the full model, so it never interleaves with a promotion.
    Returns {compact version: alias}.
    """
    name, compact = settings.register_.model_name, compact_model_name(settings)
    gate = settings.gate
    by_full: dict[str, str] = {}
    for mv in client.search_model_versions(f"name='{compact}'"):
        full_version = mv.tags.get("full_version")
        if full_version is not None and int(mv.version) > int(by_full.get(full_version, 0)):
            by_full[full_version] = str(mv.version)
    moved: dict[str, str] = {}
    with RegistryLock(client, name, ttl_s=gate.lock_ttl_s, timeout_s=gate.lock_timeout_s).held():
        for alias in (CHAMPION, CHALLENGER):
            full_version = alias_version(client, name, alias)
            target = by_full.get(full_version) if full_version else None
            current = alias_version(client, compact, alias)
            if target is not None:
                if current != target:
                    client.set_registered_model_alias(compact, alias, target)
                moved[target] = alias
            elif current is not None:
                client.delete_registered_model_alias(compact, alias)
    return moved


def measured_timings(paths: ArtifactPaths) -> dict[str, Any]:
    """The speed compress measured for the compact model now in models/compact (empty when that
    run's untracked timings file is missing, e.g. on a fresh clone, or from another model)."""
    if not paths.compress_timings.is_file():
        return {}
    timings = read_json(paths.compress_timings)
    if timings.get("compact_model_md5") != file_md5(paths.compact_dir / "model.joblib"):
        return {}
    return dict(timings)


def compact_version_tags(
    manifest: dict[str, Any],
    timings: dict[str, Any],
    model: CompactModel,
    settings: Settings,
    full_version: str,
    tags: dict[str, str],
) -> dict[str, str]:
    return {
        **tags,
        "full_model": settings.register_.model_name,
        "full_version": str(full_version),
        "candidate": manifest["candidate"],
        "candidate_kind": manifest["kind"],
        "metric": manifest["metric"],
        "valid_metric_drop": str(manifest["valid_drop"]),
        "test_metric_drop": str(manifest["test_drop"]),
        "test_metric_drop_interval": str(manifest.get("test_drop_interval")),
        "size_ratio": str(manifest["size_ratio"]),
        "packed_size_ratio": str(manifest["packed_size_ratio"]),
        **{k: str(timings[k]) for k in ("latency_ratio", "throughput_ratio") if k in timings},
        "size_bytes": str(manifest["compact_size_bytes"]),
        "compiled": str(manifest["compiled"]).lower(),
        "parity_max_abs": str(manifest["parity_max_abs"]),
        "raw_columns": ",".join(model.raw_columns),
    }


def log_compact_model(paths: ArtifactPaths, model: CompactModel) -> Any:
    """Log models/compact (the joblib and, when compiled, the shared library) as a pyfunc."""
    example = read_parquet(paths.split("test"))[model.feature_columns].head(5)
    artifacts = {"compact_model": str(paths.compact_dir / "model.joblib")}
    if (paths.compact_dir / "compact.so").is_file():
        artifacts["compiled_lib"] = str(paths.compact_dir / "compact.so")
    return log_pyfunc_model(
        "compact_model",
        "compact_pyfunc.py",
        artifacts,
        compact_signature(model, example),
        example,
        pip_requirements("treelite", "tl2cgen"),
    )


def log_registered(
    name: str,
    version: str,
    alias: str | None,
    manifest: dict[str, Any],
    timings: dict[str, Any],
    settings: Settings,
    full_version: str,
) -> None:
    speed = (
        f", {timings['latency_ratio']:.1f}x faster single-row" if "latency_ratio" in timings else ""
    )
    log.info(
        f"register: {name} version {version}{f' @{alias}' if alias else ''} "
        f"({manifest['candidate']} from {settings.register_.model_name} v{full_version}; "
        f"{manifest['size_ratio']:.1f}x smaller{speed})"
    )


def register_compact(
    settings: Settings,
    client: Any,
    full_version: str | None,
    run_id: str | None,
    tags: dict[str, str],
) -> dict[str, Any] | None:
    """Log and register models/compact as a version of `<model_name>-compact` (inside the active
    MLflow run), tagged with the full version it came from, and let its aliases follow the full
    model's. None when compress is disabled or the full candidate was not registered."""
    import mlflow

    paths = ArtifactPaths(settings.root)
    name = compact_model_name(settings)
    manifest = read_json(paths.compact_manifest) if paths.compact_manifest.is_file() else {}
    if full_version is None:
        return None
    if not manifest.get("enabled"):
        if model_exists(client, name):  # the new full version has no compact: aliases follow
            sync_compact_aliases(client, settings)
        return None
    model: CompactModel = load_joblib(paths.compact_dir / "model.joblib")
    if model.metadata.get("full_model_md5") != file_md5(paths.evaluation_model):
        log.warning(
            "register: %s not registered: models/compact was built from another "
            "models/evaluation_model.joblib (rerun the compress stage)",
            name,
        )
        return None
    info = log_compact_model(paths, model)
    timings = measured_timings(paths)
    registered = create_version(
        client,
        name,
        info,
        run_id,
        compact_version_tags(manifest, timings, model, settings, full_version, tags),
    )
    version = str(registered.version)
    aliases = sync_compact_aliases(client, settings)
    client.set_model_version_tag(name, version, REGISTRATION_COMPLETE, "true")
    mlflow.set_tags({"registered_compact_model": name, "registered_compact_version": version})
    log_registered(name, version, aliases.get(version), manifest, timings, settings, full_version)
    return {
        "model_name": name,
        "version": int(version),
        "alias": aliases.get(version),
        "candidate": manifest["candidate"],
        "size_ratio": manifest["size_ratio"],
        "latency_ratio": timings.get("latency_ratio"),
        "test_drop": manifest["test_drop"],
        "test_drop_interval": manifest.get("test_drop_interval"),
        "compiled": manifest["compiled"],
    }

"""The short report printed at the end of a run: what was produced and where."""

from __future__ import annotations

from typing import Any

from core.config import LOWER_IS_BETTER, Settings
from core.io import ArtifactPaths, read_json


def tuning_lines(tune: dict[str, Any]) -> list[str]:
    """What model selection chose and by how much, against the best single candidate and
    LightGBM's defaults in the same folds."""
    metric, chosen = tune["cv_metric"], tune["cv_mean"]
    single, base = tune["best_single"], tune.get("lightgbm_defaults")
    counts = ", ".join(f"{n} {k}" for k, n in tune.get("trials", {}).items())
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    lines = [
        f"  model:          {tune['winner']}, CV {metric} {chosen:.4f} "
        f"({tune['cv_folds']}-fold on the train split)",
        f"    improvement over the best single model ({single['name']}): "
        f"{sign * (chosen - single['score']):+.4f}",
    ]
    if base is not None:
        lines.append(
            f"    improvement over LightGBM's defaults ({base:.4f}): {sign * (chosen - base):+.4f}"
        )
    lines.append(
        f"  tuning:         best LightGBM trial {tune['best_trial']} "
        f"{tune['best_trial_score']:.4f} ({counts}; {tune['fidelity']['level']} fidelity)"
    )
    return lines


def summary_lines(settings: Settings, result: dict[str, Any]) -> list[str]:
    paths = ArtifactPaths(settings.root)
    rel = lambda p: p.relative_to(settings.root)  # noqa: E731
    lines = ["", "Pipeline summary"]
    lines.append(f"  stages run:     {', '.join(result['ran']) or 'none'}")
    lines.append(
        f"  stages skipped: {', '.join(result['skipped']) or 'none'} (current in dvc.lock)"
    )
    lines.append(
        f"  data:           {rel(paths.raw)} -> {rel(paths.validated)} -> "
        f"{rel(paths.split('train')).parent}/{{train,valid,test}}.parquet"
    )
    if paths.validation_report.is_file():
        v = read_json(paths.validation_report)
        if "kept_rows" in v and "quarantined_rows" in v:
            lines.append(
                f"  validation:     {v['raw_rows']} raw rows = {v['kept_rows']} kept + "
                f"{v['quarantined_rows']} quarantined ({rel(paths.quarantine)}) + "
                f"{v['duplicate_rows']} duplicates"
            )
        if v.get("data_docs"):
            lines.append(
                f"  data docs:      {v['data_docs']}, "
                f"{rel(paths.data_docs('model_input'))}/index.html"
            )
    if paths.test_metrics.is_file():
        doc = read_json(paths.test_metrics)
        ci = doc.get("ci", {})
        level = doc.get("ci_level", 0.95)
        lines.append(
            f"  test metrics:   ({doc.get('test_rows', '?')} rows; {level:.0%} bootstrap "
            f"intervals, {doc.get('n_boot', '?')} resamples)"
        )
        for k, v in doc["test"].items():
            iv = ci.get(k)
            lines.append(
                f"    {k}={v:.4f}" + (f"  [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "")
            )
        if "threshold" in doc:
            lines.append(
                f"  threshold:      {doc['threshold']:.4f} "
                "(chosen on the out-of-fold predictions of the train split)"
            )
    if paths.tuning_metrics.is_file():
        tune = read_json(paths.tuning_metrics)
        if tune.get("enabled") and "cv_mean" in tune:
            lines += tuning_lines(tune)
        elif tune.get("enabled") is False:
            lines.append("  tuning:         off (tune.enabled: false; train.params used)")
    # The record of this run's register (another run in the same folder may have rewritten the
    # file since); the file when register was current and skipped.
    reg = result.get("registration")
    if reg is None and paths.registration.is_file():
        reg = read_json(paths.registration)
    if reg is not None:
        gate = reg.get("gate") or {}
        if reg.get("version") is None:
            lines.append(
                f"  registered:     nothing -- {reg['model_name']} candidate rejected by the gate"
            )
        else:
            lines.append(
                f"  registered:     {reg['model_name']} version {reg['version']} "
                f"@{reg['alias']}  (models:/{reg['model_name']}@{reg['alias']})"
            )
        if reg.get("compact"):
            c = reg["compact"]
            interval = c.get("test_drop_interval")
            ci = f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
            speed = f"{c['latency_ratio']}x faster single-row, " if c.get("latency_ratio") else ""
            lines.append(
                f"  compact model:  {c['model_name']} version {c['version']} "
                f"@{c['alias'] or 'none'} ({c['candidate']}: {c['size_ratio']}x smaller, "
                f"{speed}held-out test drop {c['test_drop']:+.4f}{ci}; "
                "reports/compress/pareto.csv)"
            )
        elif paths.compress_metrics.is_file():
            why = read_json(paths.compress_metrics).get("reason")
            if why:
                lines.append(f"  compact model:  none ({why})")
        if gate:
            cmp = gate.get("comparison")
            target = f" -> @{gate['alias']}" if gate.get("alias") else " (not registered)"
            verdict = (
                (("clears" if cmp["clears"] else "does not clear") + " the rule")
                if cmp and gate["action"] != "hold"
                else gate["reason"]
            )
            lines.append(f"  gate decision:  {gate['action']}{target}: {verdict}")
            lines.append(f"  gate rule:      {gate['rule']}")
            if cmp:
                lines.append(
                    f"  gate scores:    {cmp['metric']} candidate {cmp['candidate']:.4f}, "
                    f"champion v{gate['champion_version']} {cmp['reference']:.4f}, "
                    f"improvement {cmp['diff']:+.4f} [{cmp['level']:.0%} CI "
                    f"{cmp['low']:+.4f}, {cmp['high']:+.4f}]"
                )
        if paths.model_card.is_file():
            lines.append(f"  model card:     {rel(paths.model_card)}")
    if "drift" in result["ran"] and paths.drift_report.is_file():
        d = read_json(paths.drift_report)
        score = f", score PSI {d['score']['psi']:.3f}" if d.get("score") else ""
        lines.append(
            f"  drift:          {d['new_rows']} labelled rows vs train split: "
            f"{', '.join(d['flagged']) or 'no feature'} above PSI {d['threshold']:g}"
            f"{score} ({rel(paths.drift_report)})"
            if d["new_rows"]
            else f"  drift:          no labelled files in {settings.retrain.incoming}"
        )
    lines.append(f"  tracking:       {settings.tracking_uri}  (make ui)")
    if result.get("mlflow_run_id"):
        lines.append(f"  mlflow run:     {result['mlflow_run_id']}")
    return lines


def print_summary(settings: Settings, result: dict[str, Any]) -> None:
    print("\n".join(summary_lines(settings, result)))

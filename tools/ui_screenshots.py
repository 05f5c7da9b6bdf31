"""Screenshot the project's web pages in headless Chromium and check that each shows what it must.

    .venv/bin/python tools/ui_screenshots.py [--out-dir reports/screenshots]

Pages (each a PNG in the output folder, and its rendered text searched):
- the Data Docs index of each validation (reports/data_docs/<raw|model_input>/index.html), opened
  as a file with every host name unresolvable: the table of validation results must be visible;
- the MLflow experiment page (`mlflow ui` as `make ui` starts it, on a free loopback port): the
  training runs table with the pipeline's runs;
- the MLflow registry page of register.model_name: the model name and its "@ champion" alias.

Needs /usr/bin/chromium (Debian package `chromium`). Exits 1 unless every check passes.
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: Chromium must not try it (updates, sync, QUIC, DNS).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1400,1000",
]
# No host resolves, so nothing but loopback can be reached (the MLflow UI is on 127.0.0.1).
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def render(url: str, png: Path, wait_ms: int = 10000, timeout_s: float = 300) -> str:
    """Screenshot `url` into `png` and return its rendered DOM (fresh profile each time)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            str(CHROMIUM),
            *FLAGS,
            OFFLINE,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={png}",
            "--dump-dom",
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s).stdout


def visible_text(dom: str) -> str:
    """What a reader sees: no scripts, styles or tags, entities decoded, spaces collapsed."""
    dom = re.sub(r"<(script|style|template)\b[^>]*>.*?</\1\s*>", " ", dom, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom)).replace("\xa0", " ")
    return re.sub(r"\s+", " ", text)


def check_data_docs(index: Path, png: Path) -> dict[str, bool]:
    dom = render(index.resolve().as_uri(), png, wait_ms=3000)
    text = visible_text(dom)
    rows = [visible_text(r) for r in re.findall(r"<tr\b[^>]*>(.*?)</tr>", dom, re.S)]
    return {
        "validation results table": "Run Time" in text and "Expectation Suite" in text,
        "a validation row": any(("Success" in r or "Failed" in r) and "UTC" in r for r in rows),
    }


def check_mlflow(settings: Settings, out_dir: Path) -> dict[str, bool]:
    from adapters.prefect import free_port, stop_process_group, wait_until_healthy
    from adapters.tracking import configure_mlflow, training_runs_url, ui_command

    uri, name = settings.tracking_uri, settings.register_.model_name
    configure_mlflow(uri)
    import mlflow

    experiment = mlflow.get_experiment_by_name(settings.register_.experiment)
    port = free_port()
    argv, env = ui_command(uri, port)
    server = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{base}/health", server, 180, what="mlflow ui")
        runs = ""
        if experiment is not None:
            runs = visible_text(
                render(
                    training_runs_url(base, experiment.experiment_id), out_dir / "experiment.png"
                )
            )
        registry = visible_text(render(f"{base}/#/models/{name}", out_dir / "registry.png"))
    finally:
        stop_process_group(server)
    return {
        "experiment: training runs table": "Run Name" in runs,
        "experiment: a pipeline run": re.search(r"\bpipeline-(prefect|dvc)\b", runs) is not None,
        "registry: model name": name in registry,
        # The versions table renders an alias as a tag "@ champion" (tags named gate.champion_*
        # or a gate reason mentioning the champion do not count).
        "registry: champion alias": re.search(r"@\s*champion\b", registry) is not None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out-dir", default=None, help="default: reports/screenshots")
    args = parser.parse_args(argv)
    root = Path(args.params).resolve().parent
    sys.path.insert(0, str(root))
    from flows._runtime import prepare_environment

    prepare_environment(root, in_flow=False)
    from core.config import load_settings
    from core.io import ArtifactPaths

    settings = load_settings(args.params)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} not found; install it: apt-get install chromium", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir) if args.out_dir else settings.root / "reports" / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, bool] = {}
    for suite in ("raw", "model_input"):
        index = ArtifactPaths(settings.root).data_docs(suite) / "index.html"
        found = (
            check_data_docs(index, out_dir / f"data_docs_{suite}.png") if index.is_file() else {}
        )
        results.update(
            {f"data docs {suite}: {k}": v for k, v in found.items()}
            or {f"data docs {suite}: {index} exists": False}
        )
    results.update(check_mlflow(settings, out_dir))
    print(f"screenshots in {out_dir}: {', '.join(sorted(p.name for p in out_dir.glob('*.png')))}")
    for what, ok in results.items():
        print(f"  {what}: {'visible' if ok else 'NOT visible'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Screenshot the MLflow registry page of the model with headless Chromium and check that the
@champion alias is on it.

    .venv/bin/python tools/registry_screenshot.py [--out reports/registry.png]

Starts `mlflow ui` on a free 127.0.0.1 port against the project's tracking store, loads
http://127.0.0.1:<port>/#/models/<register.model_name> in /usr/bin/chromium (Debian package
`chromium`), writes the screenshot, and exits 1 unless the rendered page names the model and shows
the "champion" alias. The server is stopped afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def chromium(*args: str, timeout: float = 300) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "--virtual-time-budget=10000",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=None, help="PNG path (default reports/registry.png)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(args.params).resolve().parent))
    from flows._runtime import prepare_environment

    prepare_environment(Path(args.params).resolve().parent, in_flow=False)
    from adapters.prefect import free_port, stop_process_group, wait_until_healthy
    from core.config import load_settings

    settings = load_settings(args.params)
    if not CHROMIUM.exists():
        print(
            f"error: {CHROMIUM} not found; install the Debian package: apt-get install chromium",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out) if args.out else settings.root / "reports" / "registry.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    name = settings.register_.model_name
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "ui",
            "--backend-store-uri",
            settings.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=settings.root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(f"{base}/health", server, 180, what="mlflow ui")
        page = f"{base}/#/models/{name}"
        chromium(f"--screenshot={out}", page)
        dom = chromium("--dump-dom", page)
    finally:
        stop_process_group(server)
    text = re.sub(r"<[^>]+>", " ", dom).replace("&nbsp;", " ").replace("\xa0", " ")
    # The versions table renders an alias as a tag "@ champion" (tags named gate.champion_* or a
    # gate reason mentioning the champion do not count).
    found = {
        "model name": name in text,
        "champion alias": re.search(r"@\s*champion\b", text) is not None,
    }
    print(f"screenshot: {out} ({'ok' if out.is_file() else 'missing'}); page {page}")
    for what, ok in found.items():
        print(f"  {what}: {'visible' if ok else 'NOT visible'}")
    return 0 if out.is_file() and all(found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

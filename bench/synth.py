"""Seeded synthetic credit-like tables for the scale benchmarks (10k / 100k / 1M rows x 30 columns).

The table keeps the quirks of the default credit data and adds the usual ones of larger tables:
- the credit columns (Seniority, Home, Time, Age, Marital, Records, Job, Expenses, Income, Assets,
  Debt, Amount, Price) with missing values where the credit data has them (Income ~9%, Assets,
  Debt, Home, Marital, Job a few percent), heavy-tailed money columns with outliers;
- a sentinel code: Income 99999999 means "unknown" (0.5% of rows; declare it in data.sentinels);
- 16 extra features: integer counts, skewed floats, a mostly-empty float, a 300-level categorical
  (too many levels for an allowed-set expectation), low-cardinality categoricals with missing;
- class imbalance: about 12% `bad` (the positive label), driven by a few of the features;
- exact duplicate rows (0.2%), as in any export that was appended twice;
- with `dirty > 0`: a share of rows with invalid values (Age 150, Home "castle", negative
  Amount), which the raw suite quarantines row by row.

    python bench/synth.py table --rows 100000 --out /tmp/synth_100k.parquet [--seed 42]
    python bench/synth.py suites   # regenerate bench/expectations/ with suggest-expectations
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core import CODE_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
SUITE_DIR = ROOT / "bench" / "expectations"
TARGET, POSITIVE = "Status", "bad"
SENTINEL = 99999999
# Rows profiled for the committed suites: clean (dirty=0), large enough to see rare levels.
SUITE_ROWS = 20_000

HOME = ["owner", "rent", "parents", "priv", "other", "ignore"]
HOME_P = [0.47, 0.22, 0.18, 0.055, 0.07, 0.005]
MARITAL = ["married", "single", "separated", "widow", "divorced"]
MARITAL_P = [0.73, 0.22, 0.029, 0.015, 0.006]
JOB = ["fixed", "freelance", "partime", "others"]
JOB_P = [0.63, 0.23, 0.10, 0.04]
CHANNEL = ["branch", "web", "phone", "broker", "partner", "app"]
PRODUCT = ["car", "home", "personal", "student", "business"]
REGION = [f"R{i:03d}" for i in range(300)]


def _with_missing(values: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    out = values.astype(object if values.dtype.kind in "OU" else float)
    out[rng.random(len(values)) < share] = None if values.dtype.kind in "OU" else np.nan
    return out


def make_table(
    n_rows: int,
    seed: int = 42,
    dirty: float = 0.0,
    duplicates: float = 0.002,
    positive_rate: float = 0.12,
) -> pd.DataFrame:
    """A seeded table of `n_rows` rows and 30 columns (29 features + the Status target)."""
    rng = np.random.default_rng(seed)
    n = n_rows
    age = np.clip(rng.normal(37, 11, n).round(), 18, 75).astype("int64")
    seniority = np.clip(rng.gamma(1.4, 5.5, n).round(), 0, 48).astype("int64")
    seniority = np.minimum(seniority, age - 16)
    time = rng.choice(
        [12, 18, 24, 30, 36, 42, 48, 54, 60, 72],
        n,
        p=[0.06, 0.05, 0.1, 0.04, 0.2, 0.05, 0.12, 0.03, 0.3, 0.05],
    ).astype("int64")
    expenses = np.clip(rng.normal(55, 20, n).round(), 35, 180).astype("int64")
    income = np.clip(rng.lognormal(4.9, 0.45, n).round(), 6, 959).astype(float)
    assets = np.where(rng.random(n) < 0.35, 0.0, rng.lognormal(8.5, 1.1, n).round(-3))
    assets[rng.random(n) < 0.001] *= 50  # outliers: a few very large estates
    debt = np.where(rng.random(n) < 0.8, 0.0, rng.lognormal(7.2, 0.9, n).round())
    amount = np.clip(rng.lognormal(6.9, 0.38, n).round(-1), 100, 5000).astype("int64")
    price = (amount * rng.uniform(1.05, 2.6, n)).round().astype("int64")
    price[rng.random(n) < 0.0005] *= 40  # outliers: data-entry slips
    home = rng.choice(HOME, n, p=HOME_P)
    marital = rng.choice(MARITAL, n, p=MARITAL_P)
    records = rng.choice(["no", "yes"], n, p=[0.83, 0.17])
    job = rng.choice(JOB, n, p=JOB_P)

    # Extra features (the usual width of a production credit table).
    n_accounts = rng.poisson(3, n).astype("int64")
    n_inquiries = rng.poisson(0.8, n).astype("int64")
    months_on_book = rng.integers(0, 241, n).astype("int64")
    utilisation = np.clip(rng.beta(2, 5, n), 0, 1)
    late_30 = rng.poisson(0.3, n).astype("int64")
    late_90 = rng.binomial(late_30, 0.25).astype("int64")
    balance = rng.lognormal(7.5, 1.3, n).round(2)
    balance[rng.random(n) < 0.0005] *= 100
    limit = (balance / np.maximum(utilisation, 0.02)).round(2)
    dti = np.clip(debt / np.maximum(income * 12, 1) + rng.normal(0.25, 0.1, n), 0, 3)
    score_ext = np.clip(rng.normal(650, 70, n).round(), 300, 850)
    last_payment_days = rng.exponential(25, n).round()
    bonus = rng.lognormal(6, 1, n).round()  # mostly empty: only some applicants
    channel = rng.choice(CHANNEL, n, p=[0.3, 0.3, 0.15, 0.1, 0.1, 0.05])
    product = rng.choice(PRODUCT, n, p=[0.4, 0.2, 0.25, 0.05, 0.1])
    region = rng.choice(REGION, n, p=(w := rng.dirichlet(np.full(300, 0.7))) / w.sum())
    has_guarantor = rng.choice(["no", "yes"], n, p=[0.9, 0.1])

    # The target: a logistic model of a few features, intercept set for the wanted rate.
    z = (
        2.0
        * (
            0.9 * (records == "yes")
            + 0.6 * (job == "partime")
            + 0.4 * (job == "freelance")
            - 0.03 * seniority
            + 0.5 * (home == "rent")
            + 0.3 * (home == "other")
            + 0.8 * (amount / price)
            - 0.004 * (income - 140)
            + 0.5 * late_90
            + 0.2 * n_inquiries
            - 0.01 * (score_ext - 650)
            + 1.2 * utilisation
            - 0.3 * (has_guarantor == "yes")
            + 0.5
            * (np.array([int(r[1:]) for r in REGION])[np.searchsorted(REGION, region)] % 7 == 0)
        )
        + rng.logistic(0, 1, n) * 0.9
    )
    cut = np.quantile(z, 1 - positive_rate)
    status = np.where(z > cut, POSITIVE, "good")

    frame = pd.DataFrame(
        {
            "Status": status,
            "Seniority": seniority,
            "Home": _with_missing(home, 0.0015, rng),
            "Time": time,
            "Age": age,
            "Marital": _with_missing(marital, 0.0003, rng),
            "Records": records,
            "Job": _with_missing(job, 0.0005, rng),
            "Expenses": expenses,
            "Income": _with_missing(income, 0.085, rng),
            "Assets": _with_missing(assets, 0.01, rng),
            "Debt": _with_missing(debt, 0.004, rng),
            "Amount": amount,
            "Price": price,
            "NumAccounts": n_accounts,
            "NumInquiries": n_inquiries,
            "MonthsOnBook": months_on_book,
            "Utilisation": _with_missing(utilisation, 0.03, rng),
            "Late30": late_30,
            "Late90": late_90,
            "Balance": _with_missing(balance, 0.02, rng),
            "CreditLimit": _with_missing(limit, 0.02, rng),
            "DebtToIncome": dti.round(4),
            "ExternalScore": _with_missing(score_ext, 0.06, rng),
            "DaysSincePayment": _with_missing(last_payment_days, 0.01, rng),
            "Bonus": _with_missing(bonus, 0.7, rng),
            "Channel": channel,
            "Product": _with_missing(product, 0.01, rng),
            "Region": region,
            "Guarantor": has_guarantor,
        }
    )
    # Sentinel code: an unknown income typed as 99999999 (as in the original credit data).
    frame.loc[rng.random(n) < 0.005, "Income"] = float(SENTINEL)
    if duplicates > 0:  # exact duplicate rows (an export appended twice)
        k = int(n * duplicates)
        src, dst = rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)
        frame.iloc[dst] = frame.iloc[src].to_numpy()
    if dirty > 0:  # invalid values the raw suite quarantines row by row
        for col, bad in (("Age", 150), ("Home", "castle"), ("Amount", -100)):
            rows = rng.random(n) < dirty / 3
            frame.loc[rows, col] = bad
    for col in frame.columns:  # one dtype per kind, as ingest writes them
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("str").where(frame[col].notna(), None).astype("str")
    ints = [
        "Seniority",
        "Time",
        "Age",
        "Expenses",
        "Amount",
        "Price",
        "NumAccounts",
        "NumInquiries",
        "MonthsOnBook",
        "Late30",
        "Late90",
    ]
    frame[ints] = frame[ints].astype("int64")
    return frame


def write_table(n_rows: int, dest: Path, seed: int = 42, dirty: float = 0.0) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    make_table(n_rows, seed=seed, dirty=dirty).to_parquet(dest, index=False)
    return dest


def scale_params(source: str) -> dict[str, dict]:
    """params.yaml sections a project needs for the synthetic data (the rest stays default)."""
    return {
        "data": {
            "source": source,
            "target": TARGET,
            "task": "binary",
            "positive_label": POSITIVE,
            "sentinels": {"Income": [SENTINEL]},
        },
        "register": {"model_name": "synth-credit", "experiment": "synth-credit"},
    }


def regenerate_suites(seed: int = 42) -> list[Path]:
    """Run the project's own `python -m flows suggest-expectations` on a clean synthetic table
    in a throwaway project, and copy the suites it writes to bench/expectations/."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        for name in (*CODE_PACKAGES, "params.yaml"):
            src = ROOT / name
            (
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
                if src.is_dir()
                else shutil.copy2(src, root / name)
            )
        table = write_table(SUITE_ROWS, root / "data/source/synth.parquet", seed=seed)
        params = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in scale_params(str(table.relative_to(root))).items():
            params[section] = {**params.get(section, {}), **values}
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(root), "PREFECT_HOME": str(Path(tmp) / "prefect")}
        subprocess.run(
            [sys.executable, "-m", "flows", "suggest-expectations", "--force"],
            cwd=root,
            env=env,
            check=True,
        )
        SUITE_DIR.mkdir(parents=True, exist_ok=True)
        out = []
        for name in ("raw", "model_input"):
            dest = SUITE_DIR / f"synth_{name}.json"
            suite = json.loads((root / "expectations" / f"{name}.json").read_text())
            suite.setdefault("meta", {})["synthetic"] = (
                f"bench/synth.py make_table({SUITE_ROWS}, seed={seed}, dirty=0)"
            )
            dest.write_text(json.dumps(suite, indent=2) + "\n")
            out.append(dest)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="write one table as Parquet")
    table.add_argument("--rows", type=int, required=True)
    table.add_argument("--out", type=Path, required=True)
    table.add_argument("--seed", type=int, default=42)
    table.add_argument("--dirty", type=float, default=0.001)
    suites = sub.add_parser("suites", help="regenerate bench/expectations/ (suggest-expectations)")
    suites.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.command == "table":
        print(write_table(args.rows, args.out, args.seed, args.dirty))
    else:
        for path in regenerate_suites(args.seed):
            print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Pipeline stages: one module per stage, pure functions plus one Prefect task entry."""

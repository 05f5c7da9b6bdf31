"""Shared plumbing: params.yaml -> typed Settings (config), paths and atomic writes (io), errors.

`CODE_PACKAGES` are the project's top-level code folders, for whatever copies the project
(the integration tests' and benchmarks' throwaway projects).
"""

CODE_PACKAGES = ("flows", "tasks", "core", "inference", "adapters", "ops")

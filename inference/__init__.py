"""What ships inside a registered model, and nothing else: the fitted transformers, the model
classes (InferenceModel, CompactModel) and the MLflow pyfunc wrappers.

This package is the registered model's only `code_paths`. It imports neither Prefect, nor MLflow's
tracking, nor any other package of this project, so a registered model loads where only the
pinned libraries are installed.
"""

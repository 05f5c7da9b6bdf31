"""MLflow pyfunc wrapper around InferenceModel: what `models:/<name>@champion` loads."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from tasks.model import InferenceModel


class PipelineModel(mlflow.pyfunc.PythonModel):
    """Raw input columns in; probabilities and label (or predicted value) out."""

    def __init__(self, model: InferenceModel) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.predict_frame(pd.DataFrame(model_input))

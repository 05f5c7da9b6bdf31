"""MLflow pyfunc entry point of `<model_name>-compact` (models from code, like inference/pyfunc.py).

The CompactModel travels as the `compact_model` artifact (joblib) and, when compress compiled it,
the tl2cgen shared library as `compiled_lib`. If the library cannot be loaded where the model is
served (no tl2cgen, other platform), the model predicts with its LightGBM trees instead.
"""

from __future__ import annotations

from typing import Any

import joblib
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class CompactPipelineModel(PythonModel):
    """Raw input columns in; probabilities and label (or predicted value) out."""

    def load_context(self, context: Any) -> None:
        self.model = joblib.load(context.artifacts["compact_model"])
        lib = context.artifacts.get("compiled_lib")
        if lib:
            self.model.attach_compiled(lib)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.model.predict_frame(pd.DataFrame(model_input))


set_model(CompactPipelineModel())

"""MLflow pyfunc entry point ("models from code"): what `models:/<name>@champion` loads.

MLflow executes this file when it loads the model; `register` passes its path, never imports it.
The fitted InferenceModel travels as the `inference_model` artifact (joblib), and the `inference`
package (its only code) travels as the model's code path, so the model loads anywhere the pinned
libraries are, without the training code.
"""

from __future__ import annotations

from typing import Any

import joblib
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class PipelineModel(PythonModel):
    """Raw input columns in; probabilities and label (or predicted value) out.

    It serves the model learnt from every labelled row (`inference_model`). The same recipe
    learnt from the train split only travels as `evaluation_model`: the promotion gate compares
    a later candidate with it on test rows neither of them learnt from.
    """

    def load_context(self, context: Any) -> None:
        self.model = joblib.load(context.artifacts["inference_model"])
        self.evaluation_path = context.artifacts.get("evaluation_model")

    def evaluation_model(self) -> Any | None:
        """The model that was evaluated (None for models registered without one)."""
        return joblib.load(self.evaluation_path) if self.evaluation_path else None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.model.predict_frame(pd.DataFrame(model_input))


set_model(PipelineModel())

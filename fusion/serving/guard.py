"""A guard on MLflow's scoring server for requests the model never sees: `mlflow models serve` reads and parses
the body before calling the model, and answers some bodies badly on its own (MLflow 3.x):

- JSON nested past Python's recursion limit (``[[[[...]]]]``): RecursionError, answered 500;
- a CSV or Parquet body it cannot parse: 400 with the server's traceback in the answer (``stack_trace``);
- a body that is not JSON: 400 quoting the whole body back (a 20 MB body, a 20 MB answer);
- a body of any size is parsed before the model can refuse it (``serving.limits.max_request_bytes``).

When the model is loaded by that server, `install` wraps its request entry point (``scoring_server.invocations``,
looked up by the route at every request) so that the body size is checked before parsing, a RecursionError becomes
a 400 and no answer carries a traceback or more than a preview of the body. Without it (mlflow.pyfunc.load_model
in Python) nothing changes. The HTTP layer still reads a body whole before anything runs: for a cap at the
socket, put a proxy with a body limit in front (docs/serving.md, "Serve it over HTTP")."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from fusion.serving.settings import Limits, setting_name

SERVER_APP = "mlflow.pyfunc.scoring_server.app"  # the module `mlflow models serve` runs; it loads the model on import
QUOTED_INPUT = "\nInput: \n"  # where MLflow starts quoting a body it could not read as JSON
QUOTED_INPUT_CHARS = 200  # what is kept of that quote: enough to recognise the request
LOGGER = logging.getLogger(__name__)


def in_scoring_server() -> bool:
    """Whether this process is `mlflow models serve`'s (its app module is importing and loading the model)."""
    return SERVER_APP in sys.modules


def install(limits: Limits) -> None:
    """Wrap ``mlflow.pyfunc.scoring_server.invocations`` with `guarded` (once per process)."""
    from mlflow.pyfunc import scoring_server

    if not getattr(scoring_server.invocations, "fusion_guard", False):
        scoring_server.invocations = guarded(scoring_server.invocations, limits)


def guarded(invocations: Callable[..., Any], limits: Limits) -> Callable[..., Any]:
    """``invocations(data, content_type, model, input_schema)`` refusing a body over ``max_request_bytes`` before
    it is parsed, answering JSON nested too deeply with 400, and without tracebacks or whole bodies in answers."""

    @functools.wraps(invocations)
    def guarded_invocations(data: bytes, content_type: str | None, model: Any, input_schema: Any) -> Any:
        if len(data) > limits.max_request_bytes:
            raise MlflowException(
                f"the request body ({len(data):,} bytes) is over the server's limit of "
                f"{limits.max_request_bytes:,} bytes ({setting_name('max_request_bytes')}); send "
                f"fewer rows per request",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if content_type is None:
            raise MlflowException(
                "the request has no Content-Type; send Content-Type: application/json with "
                '{"dataframe_records": [...]} or {"dataframe_split": {...}}',
                error_code=INVALID_PARAMETER_VALUE,
            )
        try:
            return invocations(data, content_type, model, input_schema)
        except RecursionError:
            raise MlflowException(
                'the request\'s JSON is nested too deeply to read; send {"dataframe_records": '
                '[{"id": ..., "text": ..., "image": ..., "audio": ...}]}',
                error_code=INVALID_PARAMETER_VALUE,
            ) from None
        except MlflowException as exc:
            trace = exc.json_kwargs.pop("stack_trace", None)
            if trace:
                LOGGER.warning("request refused by MLflow's scoring server: %s\n%s", exc.message[:1000], trace)
            head, quote, body = exc.message.partition(QUOTED_INPUT)
            if quote and len(body) > QUOTED_INPUT_CHARS:
                exc.message = f"{head}{quote}{body[:QUOTED_INPUT_CHARS]}... ({len(body):,} characters in all)"
            raise

    guarded_invocations.fusion_guard = True
    return guarded_invocations

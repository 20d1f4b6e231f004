"""Failures that explain themselves: a step that stops on bad input, a refused gate or a
full disk ends with its reason, in one line, as the run's failure message.

Dagster wraps any other exception in its own error ("Error occurred while executing op
...") and shows the pipeline's message as a nested cause behind "View full message"; a
`dagster.Failure` is shown as it is, and its description becomes the run's failure
message. Only errors whose message is the whole story are converted: a bug keeps its
stack trace.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from dagster import Failure

from pipeline.core.atomic import StorageFull
from pipeline.core.errors import InputError
from pipeline.core.lock import StorageBusy
from pipeline.core.report import GateReport
from pipeline.release.gates import Gate
from pipeline.release.verdicts import GateError
from resources import StorageResource

EXPLAINED = (InputError, GateError, StorageFull, StorageBusy, FloatingPointError)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def explained(storage: StorageResource | None = None) -> Iterator[None]:
    """Re-raise an explained error as a Failure whose description is its message; first,
    the refusal the run met when it started (`StorageResource.refusal`), if any."""
    try:
        if storage is not None and storage.refusal is not None:
            raise storage.refusal
        yield
    except EXPLAINED as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None


def explains(fn: F) -> F:
    """`explained` around a whole asset body (Dagster still sees the body's signature),
    with the run's `storage` resource."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with explained(kwargs.get("storage")):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def refused(gate: Gate, report: GateReport) -> Failure:
    """A blocking check that failed: its failed rules in one line (`GateReport.refusal`),
    as the run's failure, and how to accept them on record where the gate allows it."""
    failed = [r.name for r in report.rules if not r.passed and not r.waived]
    waivable = [f"{gate.name}.{r}" for r in failed if r in gate.waivable]
    accept = (f". If this is the change you meant, accept it on record for a run: make run "
              f"JOB=refit ACCEPT={','.join(waivable)} REASON=\"...\" OPERATOR=\"...\" (or "
              "the launchpad's resources.waiver)" if waivable and len(waivable) == len(failed)
              else "")
    return Failure(description=f"{gate.name} refused: {report.refusal()}{accept}",
                   allow_retries=False)

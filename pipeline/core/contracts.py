"""Table contracts: pandera schemas checked where a table crosses a stage boundary.

Each stage declares the schemas of the tables it reads or hands on, beside its code; this
module is the one place pandera's errors become an `InputError` that names the file, the
column, the first offending row and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError

from pipeline.core.errors import InputError


def _numbers(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


# Element checks that also catch text in a numeric column (it reads as NaN here) and name
# the row, where a dtype check would only name the column.
NUMBER = pa.Check(lambda s: _numbers(s).notna(), error="a number (infinity allowed)")
FINITE = pa.Check(lambda s: np.isfinite(_numbers(s)), error="a finite number")
NON_NEGATIVE = pa.Check(lambda s: _numbers(s).fillna(0) >= 0, error="not negative")


def check_table(schema: pa.DataFrameSchema, df: pd.DataFrame, file: str | Path | None,
                fix: str, *, csv: bool = False) -> pd.DataFrame:
    """Validate without coercion (the data is never altered) and return `df` itself.

    `csv=True` reports the line number of the first bad row (header on line 1).
    """
    try:
        schema.validate(df, lazy=False)
    except SchemaError as exc:
        raise _input_error(exc, schema, file, fix, csv) from None
    return df


def _input_error(exc: SchemaError, schema: pa.DataFrameSchema, file: str | Path | None,
                 fix: str, csv: bool) -> InputError:
    column = getattr(exc.schema, "name", None)
    cases = exc.failure_cases
    if isinstance(cases, str):  # a missing column: pandera hands the column name
        column = column if column != schema.name else cases
        return InputError(file, _field(schema, column, file), "required column is missing",
                          fix)
    if column == schema.name and isinstance(exc.check, pa.Check) and exc.check.name:
        column = exc.check.name  # a rule across columns names the column it is about
    elif column == schema.name and schema.unique:
        column = ",".join(schema.unique)  # rows duplicated on the table's key
    where = ""
    if isinstance(cases, pd.DataFrame) and not cases.empty:
        first = cases.iloc[0]
        index = first.get("index")
        if index is not None and not pd.isna(index):
            index = int(index) if isinstance(index, float | np.floating) else index
            where = f" at line {index + 2}" if csv else f" at row {index}"
        value = first.get("failure_case")
        value = value.item() if isinstance(value, np.generic) else value
        where += f" (value {value!r})" if value is not None else ""
    problem = _problem(exc)
    return InputError(file, _field(schema, column, file), f"{problem}{where}", fix)


def _field(schema: pa.DataFrameSchema, column: object, file: str | Path | None) -> str | None:
    """`table.column`, or just the column when the file is named after the table."""
    if column is None or column == schema.name:
        return schema.name
    if not schema.name or (file is not None and Path(file).stem == schema.name):
        return str(column)
    return f"{schema.name}.{column}"


def _problem(exc: SchemaError) -> str:
    check = exc.check
    if isinstance(check, pa.Check):
        return f"fails the rule: {check.error or check.name}"
    reason = exc.reason_code.name if exc.reason_code is not None else ""
    if "DUPLICATES" in reason:
        return "duplicated values"
    if "NULLS" in reason:
        return "missing value"
    return str(exc).splitlines()[0]

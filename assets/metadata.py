"""Small helpers that turn pipeline results into Dagster metadata and check results."""

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

from pipeline.core.hashing import sha256_file
from pipeline.core.report import GateReport


def data_version(sha256: str) -> DataVersion:
    """Content hash as data version: a config-only rerun with equal output stays 'fresh'."""
    return DataVersion(sha256[:16])


def file_result(path: Path, metadata: dict[str, Any]) -> MaterializeResult:
    """A single-file asset's result: its path, size and sha256, which is also its version."""
    sha = sha256_file(path)
    return MaterializeResult(
        metadata={**metadata, "path": MetadataValue.path(str(path)),
                  "bytes": path.stat().st_size, "sha256": sha},
        data_version=data_version(sha),
    )


def column_schema(schema: pa.DataFrameSchema) -> dict[str, Any]:
    """A pandera contract as Dagster's column schema, so the UI's Columns tab shows it."""
    columns = [
        TableColumn(
            name=name, type=str(col.dtype) if col.dtype is not None else "number or text",
            constraints=TableColumnConstraints(
                nullable=col.nullable, unique=col.unique,
                other=[str(c.error or c.name) for c in col.checks]),
        )
        for name, col in schema.columns.items()
    ]
    return {"dagster/column_schema": TableSchema(columns=columns)}


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """GitHub-style Markdown table without the optional `tabulate` dependency."""
    def cell(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def check_result(report: GateReport, *, warn: bool = False) -> AssetCheckResult:
    """A report as a check result (severity ERROR, or WARN for a warning check): numbers
    for the Plots tab, rules as a table."""
    rules = pd.DataFrame([(r.name, "PASS" if r.passed else "FAIL", r.detail)
                          for r in report.rules], columns=["rule", "result", "detail"])
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.WARN if warn else AssetCheckSeverity.ERROR,
        description=report.summary,
        metadata={
            **{k: float(v) for k, v in report.metrics.items()},
            "rules": MetadataValue.md(markdown_table(rules)),
            "details": MetadataValue.json(json.loads(json.dumps(report.details, default=str))),
        },
    )


def svg_image(svg: str, title: str) -> str:
    """An SVG as a Markdown image the UI renders inline."""
    image = base64.b64encode(svg.encode()).decode()
    return f"![{title}](data:image/svg+xml;base64,{image})"


def line_chart(xs: list[float], ys: list[float], title: str, width: int = 480,
               height: int = 200) -> str:
    """A log-scale line chart as an inline SVG image, plus the numbers it draws, in Markdown."""
    if not xs:
        return f"**{title}**: no points"
    logs = np.log10(np.maximum(np.asarray(ys, dtype=float), 1e-300))
    x = np.asarray(xs, dtype=float)
    sx = (x - x.min()) / max(np.ptp(x), 1e-12) * (width - 20) + 10
    sy = height - 10 - (logs - logs.min()) / max(np.ptp(logs), 1e-12) * (height - 20)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx, sy, strict=True))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<polyline fill="none" stroke="#4f43dd" stroke-width="2" points="{points}"/></svg>'
    )
    step = max(1, len(xs) // 10)
    rows = pd.DataFrame({"epoch": xs[::step], title: ys[::step]})
    return (f"**{title}** (log scale, {ys[0]:.4g} → {ys[-1]:.4g})\n\n"
            f"{svg_image(svg, title)}\n\n{markdown_table(rows)}")

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
from pipeline.core.svg import Series, scatter_svg


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


def check_result(report: GateReport, *, warn: bool = False,
                 extra: dict[str, str] | None = None) -> AssetCheckResult:
    """A report as a check result (severity ERROR, or WARN for a warning check): numbers
    for the Plots tab, rules as a table, and any `extra` text metadata."""
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
            **(extra or {}),
        },
    )


def svg_image(svg: str, title: str) -> str:
    """An SVG as a Markdown image the UI renders inline."""
    image = base64.b64encode(svg.encode()).decode()
    return f"![{title}](data:image/svg+xml;base64,{image})"


LOSS_JUMP = (
    "The dashed line marks where the L0 phase hands over to the polish. Before it the curve "
    "is the training objective at randomly drawn gates: the data term plus the L0 and L2 "
    "penalties. From it the gates are fixed (kept records open, the rest closed) and the "
    "penalties are gone, so the first polish epoch shows the data term alone at those "
    "weights. The polish starts a fresh optimizer, whose first full-size steps move every "
    "kept weight at once: the loss jumps for a few epochs, then falls below the L0 phase's "
    "while the learning rate decays over the last 30%. The exported weights are the last "
    "epoch's."
)


def loss_chart(l0: list[float], polish: list[float],
               stopping: dict[str, dict] | None = None) -> str:
    """The fit's loss by epoch, log scale, as an inline SVG (pipeline.core.svg) with the
    L0 → polish handover and where each phase stopped marked; then the stopping rule and
    the numbers (4 significant digits, the final epoch included)."""
    ys = np.asarray(l0 + polish, dtype=float)
    if not len(ys):
        return "**loss by epoch**: no epochs"
    epochs = np.arange(1, len(ys) + 1, dtype=float)
    phases = [Series(phase, epochs[a:b].tolist(), ys[a:b].tolist(), line=True, points=False)
              for phase, (a, b) in (("L0", (0, len(l0))), ("polish", (len(l0), len(ys))))
              if b > a]
    marks = []
    stopping = stopping or {}
    l0_stop = (stopping.get("l0") or {}).get("converged_at")
    polish_stop = (stopping.get("polish") or {}).get("converged_at")
    if l0 and polish:
        marks.append((len(l0) + 0.5, (f"L0 converged at {l0_stop:,}; " if l0_stop else "")
                      + f"polish from epoch {len(l0) + 1:,}"))
    if polish_stop:
        marks.append((len(l0) + polish_stop + 0.5, "polish converged: decay"))
    svg = scatter_svg(phases, "loss by epoch", "epoch", "loss (log scale)", log_x=False,
                      x_ticks=np.unique(np.linspace(1, len(ys), 5).round()).tolist(),
                      x_marks=marks)
    rows = sorted({*range(1, len(ys) + 1, max(1, len(ys) // 10)), len(l0), len(l0) + 1,
                   len(ys)} - {0, len(ys) + 1})
    table = pd.DataFrame({"epoch": rows,
                          "phase": ["L0" if e <= len(l0) else "polish" for e in rows],
                          "loss": [float(ys[e - 1]) for e in rows]})
    rules = "".join(f"\n- {name}: {r['epochs']:,} of at most {r['max_epochs']:,} epochs; "
                    f"{r['rule']}" for name, r in (("L0 phase", stopping.get("l0")),
                                                    ("polish", stopping.get("polish"))) if r)
    return (f"**loss by epoch** ({len(l0):,} L0 epochs, then {len(polish):,} polish; "
            f"{ys[0]:.4g} → {ys[-1]:.4g})\n\n{svg_image(svg, 'loss by epoch')}\n\n"
            + (f"**stopping**{rules}\n\n" if rules else "")
            + f"{LOSS_JUMP}\n\n{markdown_table(table)}")

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


def loss_chart(l0: list[float], polish: list[float], width: int = 560,
               height: int = 260) -> str:
    """The fit's loss by epoch, log scale, as an inline SVG with axes and the L0 → polish
    handover marked; then the numbers (4 significant digits, the final epoch included)."""
    ys = np.asarray(l0 + polish, dtype=float)
    if not len(ys):
        return "**loss by epoch**: no epochs"
    left, right, top, bottom = 70, 20, 20, 45
    epochs = np.arange(1, len(ys) + 1)
    logs = np.log10(np.maximum(ys, 1e-300))
    lo, hi = np.floor(logs.min()), np.ceil(logs.max())
    hi = hi if hi > lo else lo + 1

    def x(e: float) -> float:
        return left + (e - 1) / max(len(ys) - 1, 1) * (width - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    parts = [f'<rect width="{width}" height="{height}" fill="white"/>',
             _line(left, top, left, height - bottom), _line(left, height - bottom,
                                                            width - right, height - bottom)]
    for power in np.arange(lo, hi + 1, max(1, int((hi - lo) // 5) or 1)):
        parts += [_line(left - 4, y(power), left, y(power)),
                  _text(left - 6, y(power) + 4, f"1e{int(power)}", "end")]
    for e in np.unique(np.linspace(1, len(ys), 5).round().astype(int)):
        parts += [_line(x(e), height - bottom, x(e), height - bottom + 4),
                  _text(x(e), height - bottom + 16, f"{e:,}", "middle")]
    parts += [_text((left + width - right) / 2, height - 6, "epoch", "middle"),
              _text(14, (top + height - bottom) / 2, "loss (log scale)", "middle",
                    f'transform="rotate(-90 14 {(top + height - bottom) / 2})"')]
    for phase, (a, b), colour in (("L0", (0, len(l0)), "#4f43dd"),
                                  ("polish", (len(l0), len(ys)), "#e8590c")):
        if b > a:
            pts = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in zip(epochs[a:b], logs[a:b],
                                                                    strict=True))
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{pts}"><title>{phase}</title></polyline>')
    if l0 and polish:
        handover = x(len(l0) + 0.5)
        parts += [_line(handover, top, handover, height - bottom, 'stroke-dasharray="4 3"'),
                  _text(handover + 4, top + 10, f"polish from epoch {len(l0) + 1:,}", "start")]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">{"".join(parts)}</svg>')
    image = base64.b64encode(svg.encode()).decode()
    rows = sorted({*range(1, len(ys) + 1, max(1, len(ys) // 10)), len(l0), len(l0) + 1,
                   len(ys)} - {0, len(ys) + 1})
    table = pd.DataFrame({"epoch": rows,
                          "phase": ["L0" if e <= len(l0) else "polish" for e in rows],
                          "loss": [float(ys[e - 1]) for e in rows]})
    return (f"**loss by epoch** ({len(l0):,} L0 epochs, then {len(polish):,} polish; "
            f"{ys[0]:.4g} → {ys[-1]:.4g})\n\n![loss by epoch](data:image/svg+xml;base64,"
            f"{image})\n\n{LOSS_JUMP}\n\n{markdown_table(table)}")


def _line(x1: float, y1: float, x2: float, y2: float, extra: str = "") -> str:
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#333" '
            f'{extra}/>')


def _text(x: float, y: float, text: str, anchor: str, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{text}</text>'

"""Pipeline results as Dagster metadata a person reads at a glance.

One formatter (`readable`) for every asset and check: numbers at 4 significant figures
(still numbers, so the Plots tab draws them), "—" for none, tables as Markdown (cells
escaped and formatted alike), plots small enough for the UI to draw in place. Dagster
draws a Markdown entry inline only under 1,000 characters (longer ones sit behind "[Show
Markdown]"), so every plot has an inline version (`inline_plot`) and the full chart with
its numbers beside it.
"""

import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
from dagster._core.definitions.metadata import (  # the value classes MetadataValue builds
    FloatMetadataValue,
    JsonMetadataValue,
    NullMetadataValue,
)

from pipeline.core.hashing import sha256_file
from pipeline.core.numbers import NONE, rounded, text
from pipeline.core.report import GateReport
from pipeline.core.svg import Series, inline_svg, scatter_svg

INLINE_LIMIT = 1000  # Dagster's UI draws Markdown metadata inline below this many characters


def readable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Every entry as a person reads it: see the module docstring. Tables may be given as
    DataFrames; dicts and lists become JSON."""
    return {key: _entry(value) for key, value in metadata.items()}


def _entry(value: Any) -> Any:
    if value is None or isinstance(value, NullMetadataValue):
        return MetadataValue.text(NONE)
    if isinstance(value, FloatMetadataValue):
        value = value.value
    if isinstance(value, JsonMetadataValue):
        value = value.data
    elif isinstance(value, MetadataValue):  # text, Markdown, path, schema: as given
        return value
    if isinstance(value, pd.DataFrame):
        return MetadataValue.md(markdown_table(value))
    if type(value) in (dict, list, tuple):  # not records (TableSchema is a tuple)
        return MetadataValue.json(rounded(json.loads(json.dumps(value, default=str))))
    if isinstance(value, bool | np.bool_):
        return MetadataValue.bool(bool(value))
    if isinstance(value, int | np.integer):
        return MetadataValue.int(int(value))
    if isinstance(value, float | np.floating):
        shown = rounded(value)
        return MetadataValue.text(NONE) if shown is None else MetadataValue.float(shown)
    return value


def data_version(sha256: str) -> DataVersion:
    """Content hash as data version: a config-only rerun with equal output stays 'fresh'."""
    return DataVersion(sha256[:16])


def file_result(path: Path, metadata: dict[str, Any]) -> MaterializeResult:
    """A single-file asset's result: its path, size and sha256, which is also its version."""
    sha = sha256_file(path)
    return MaterializeResult(
        metadata=readable({**metadata, "path": MetadataValue.path(str(path)),
                           "bytes": path.stat().st_size, "sha256": sha}),
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


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-style Markdown table (without the optional `tabulate` dependency); cells as
    `text` writes them, `|` escaped so a cell never splits into two."""
    def cell(v: Any) -> str:
        return text(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def check_result(report: GateReport, *, warn: bool = False,
                 extra: dict[str, str] | None = None) -> AssetCheckResult:
    """A report as a check result (severity ERROR, or WARN for a warning check): the rules
    table first (each rule's value against its limit), then the numbers for the Plots tab,
    and any `extra` text metadata."""
    rules = pd.DataFrame([(r.name, "WAIVED" if r.waived else "PASS" if r.passed else "FAIL",
                           r.value, r.limit, r.detail) for r in report.rules],
                         columns=["rule", "result", "value", "limit", "detail"])
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.WARN if warn else AssetCheckSeverity.ERROR,
        description=report.summary,
        metadata=readable({
            "rules": rules,
            # Dagster's own "Timestamp" of a check is when its run planned it (the run's
            # start), earlier than the materialization it judged; this is when it judged.
            "judged_at": MetadataValue.timestamp(time.time()),
            **{k: float(v) for k, v in report.metrics.items()},
            "details": report.details,
            **(extra or {}),
        }),
    )


def svg_image(svg: str, title: str) -> str:
    """An SVG as a Markdown image (the UI renders it in the entry's dialog)."""
    image = base64.b64encode(svg.encode()).decode()
    return f"![{title}](data:image/svg+xml;base64,{image})"


def inline_plot(series: list[Series], title: str, *, x_marks: tuple = (), rings: tuple = (),
                log_y: bool = True, log_x: bool = False) -> str:
    """A small plot as Markdown the UI draws in place (under `INLINE_LIMIT` characters):
    each series thinned until it fits."""
    for points in (60, 48, 40, 32, 24, 16, 8):
        thin = [Series(s.label, *_thinned(s.xs, s.ys, points), line=s.line,
                       points=s.points) for s in series]
        svg = inline_svg(thin, x_marks=x_marks, rings=rings, log_y=log_y, log_x=log_x)
        image = min(svg_image(svg, title),
                    f"![{title}](data:image/svg+xml,{quote(svg, safe=SAFE)})", key=len)
        if len(image) < INLINE_LIMIT:
            return image
    return f"**{title}**: too many series to draw inline"


SAFE = "=/:,.'-;()"  # characters a data URI may keep unescaped inside Markdown's ( )


def _thinned(xs: Any, ys: Any, points: int) -> tuple[list[float], list[float]]:
    """At most `points` of a series, evenly spaced, its first and last kept."""
    xs, ys = list(xs), list(ys)
    if len(xs) <= points:
        return xs, ys
    keep = sorted({round(i * (len(xs) - 1) / (points - 1)) for i in range(points)})
    return [xs[i] for i in keep], [ys[i] for i in keep]


LOSS_JUMP = (
    "The dashed line marks where the L0 phase hands over to the polish. Before it the curve "
    "is the training objective at randomly drawn gates: the data term plus the L0 and L2 "
    "penalties. From it the gates are fixed (kept records open, the rest closed) and the "
    "penalties are gone, so the first polish epoch shows the data term alone at those "
    "weights. The polish starts a fresh optimizer, whose first full-size steps move every "
    "kept weight at once: the loss jumps for a few epochs, then falls below the L0 phase's "
    "while the learning rate decays over the last 30%. The exported weights are the last "
    "epoch's; `data_loss_exported` is the data term at them, after the last step."
)


def _loss_series(l0: list[float], polish: list[float], stopping: dict[str, dict] | None
                 ) -> tuple[list[Series], list[tuple[float, str]]]:
    """Each phase as a line, and the epochs to mark: the handover, where each phase
    converged (`FitResult.stopping`)."""
    ys = np.asarray(l0 + polish, dtype=float)
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
    return phases, marks


def loss_inline(l0: list[float], polish: list[float],
                stopping: dict[str, dict] | None = None) -> str:
    """The training objective by epoch, drawn in place (log scale; the handover and where
    a phase converged dashed)."""
    if not l0 and not polish:
        return f"objective by epoch: {NONE}"
    phases, marks = _loss_series(l0, polish, stopping)
    return inline_plot(phases, "objective by epoch", x_marks=tuple(marks))


def loss_chart(l0: list[float], polish: list[float],
               stopping: dict[str, dict] | None = None) -> str:
    """The fit's training objective by epoch, log scale, as an SVG (pipeline.core.svg)
    with the L0 → polish handover and where each phase stopped marked; then the stopping
    rule and the numbers (4 significant digits, the final epoch included)."""
    ys = np.asarray(l0 + polish, dtype=float)
    if not len(ys):
        return f"**objective by epoch**: {NONE}"
    phases, marks = _loss_series(l0, polish, stopping)
    svg = scatter_svg(phases, "objective by epoch", "epoch", "objective (log scale)",
                      log_x=False, x_ticks=np.unique(np.linspace(1, len(ys), 5).round()).tolist(),
                      x_marks=marks)
    rows = sorted({*range(1, len(ys) + 1, max(1, len(ys) // 10)), len(l0), len(l0) + 1,
                   len(ys)} - {0, len(ys) + 1})
    table = pd.DataFrame({"epoch": rows,
                          "phase": ["L0" if e <= len(l0) else "polish" for e in rows],
                          "objective": [float(ys[e - 1]) for e in rows]})
    stopping = stopping or {}
    rules = "".join(f"\n- {name}: {r['epochs']:,} of at most {r['max_epochs']:,} epochs; "
                    f"{r['rule']}" for name, r in (("L0 phase", stopping.get("l0")),
                                                    ("polish", stopping.get("polish"))) if r)
    return (f"**objective by epoch** ({len(l0):,} L0 epochs, then {len(polish):,} polish; "
            f"{ys[0]:.4g} → {ys[-1]:.4g})\n\n{svg_image(svg, 'objective by epoch')}\n\n"
            + (f"**stopping**{rules}\n\n" if rules else "")
            + f"{LOSS_JUMP}\n\n{markdown_table(table)}")

"""The results table (printed and written to docs/bench.md) and the grant-rate plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.grants import RATE_LIMIT

DOCS = Path(__file__).resolve().parent.parent / "docs"
PLOT = DOCS / "bench" / "rate.png"


@dataclass
class Row:
    target: str
    measured: str
    met: bool | None  # None: not run

    def cells(self) -> str:
        verdict = "-" if self.met is None else ("yes" if self.met else "**no**")
        return f"| {self.target} | {self.measured} | {verdict} |"


def table(rows: list[Row]) -> str:
    lines = ["| target | measured | met? |", "|---|---|---|"]
    lines.extend(row.cells() for row in rows)
    return "\n".join(lines)


def plot_rate(timeline: list[tuple[float, float, int]], path: Path, title: str) -> None:
    """Answered Add-MailboxPermission calls and 429s per second, against the limit and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = int(max(end for _, end, _ in timeline)) + 1
    ok = [0] * span
    throttled = [0] * span
    for _, end, status in timeline:
        if end < 0:
            continue
        (throttled if status == 429 else ok)[int(end)] += 1
    seconds = list(range(span))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(seconds, ok, label="Exchange calls answered per second", color="tab:blue", linewidth=1.2)
    ax.bar(seconds, throttled, label="429 (throttled) per second", color="tab:red", alpha=0.6, width=1.0)
    ax.axhline(RATE_LIMIT, color="black", linestyle="--", linewidth=1, label=f"limit {RATE_LIMIT:.0f}/s")
    ax.axhline(0.87 * RATE_LIMIT, color="tab:green", linestyle=":", linewidth=1, label="target 87/s")
    ax.set_xlabel("seconds since the first Add-MailboxPermission")
    ax.set_ylabel("calls per second")
    ax.set_title(title)
    ax.set_ylim(0, RATE_LIMIT * 1.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

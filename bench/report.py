"""The results table (printed and written to docs/bench.md) and the grant-rate plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.grants import RATE_LIMIT

GRANT_TARGET = 1.05  # the grant phase's target: at most this times the throttle-allowed minimum

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


def plot_rate(timeline: list[tuple[float, float, int, int]], path: Path, title: str) -> None:
    """Add-MailboxPermission cmdlets answered per second (a ``$batch`` request carries up to 10) and
    throttled requests per second, against the limit (which counts cmdlets) and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = int(max(end for _, end, _, _ in timeline)) + 1
    granted = [0] * span
    throttled = [0] * span
    for _, end, status, cmdlets in timeline:
        if end < 0:
            continue
        if status == 429:
            throttled[int(end)] += 1
        else:
            granted[int(end)] += cmdlets
    seconds = list(range(span))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(
        seconds,
        granted,
        label="Add-MailboxPermission cmdlets answered per second",
        color="tab:blue",
        linewidth=1.2,
    )
    ax.bar(
        seconds, throttled, label="requests throttled (429) per second", color="tab:red", alpha=0.6, width=1.0
    )
    ax.axhline(
        RATE_LIMIT, color="black", linestyle="--", linewidth=1, label=f"limit {RATE_LIMIT:.0f} cmdlets/s"
    )
    ax.axhline(
        RATE_LIMIT / GRANT_TARGET,
        color="tab:green",
        linestyle=":",
        linewidth=1,
        label=f"target {RATE_LIMIT / GRANT_TARGET:.0f}/s ({GRANT_TARGET}x the allowed minimum)",
    )
    ax.set_xlabel("seconds since the first Add-MailboxPermission")
    ax.set_ylabel("per second")
    ax.set_title(title)
    ax.set_ylim(0, RATE_LIMIT * 1.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

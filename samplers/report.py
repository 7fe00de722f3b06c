"""A self-contained HTML report of a sampler comparison: the summary table, the findings, and trace
and autocorrelation plots (PNG, embedded as data URIs, so the file can be mailed or archived)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from samplers.diagnostics import autocorrelation

__all__ = ["write_report", "trace_figure", "autocorrelation_figure"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.ok { color: #1a7f37; } .warn { color: #b35900; }
img { max-width: 100%; }
"""

# sets data-images="ok" on <body> once every plot has decoded (checked by the browser test)
SCRIPT = """
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
  document.body.dataset.images = ok ? 'ok' : 'broken';
  document.body.dataset.imageCount = String(imgs.length);
});
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def trace_figure(traces: dict[str, np.ndarray], title: str, max_chains: int = 4):
    """One panel per statistic: the first ``max_chains`` chains' draws against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(traces), 1, figsize=(9, 1.8 * len(traces)), squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], traces.items(), strict=True):
        for chain in values[:max_chains]:
            ax.plot(chain, lw=0.6)
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("kept step")
    fig.suptitle(f"{title}: traces", fontsize=10)
    return fig


def autocorrelation_figure(traces: dict[str, np.ndarray], title: str, max_lag: int = 200):
    """The chains' mean autocorrelation of each statistic up to ``max_lag`` lags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.6))
    for name, values in traces.items():
        rho = autocorrelation(values, max_lag)
        if not np.isnan(rho).all():
            ax.plot(np.arange(len(rho)), rho, lw=1, label=name)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("lag (steps)")
    ax.set_ylabel("autocorrelation")
    ax.legend(fontsize=7)
    fig.suptitle(f"{title}: autocorrelation", fontsize=10)
    return fig


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}"


def write_report(comparison, path) -> Path:
    """Write ``comparison`` (a ``samplers.compare`` result) as one HTML file at ``path``."""
    path = Path(path)
    e = html.escape
    head = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<title>Sampler comparison</title>",
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        "<h1>Sampler comparison</h1>",
        f"<p>Model: <code>{e(comparison.model)}</code>. Settings: "
        + ", ".join(f"{e(str(k))} = {e(str(v))}" for k, v in comparison.settings.items())
        + f".</p><p>{e(comparison.exact_note)}</p>",
    ]
    rows = [
        "<table id='summary'><tr>" + "".join(f"<th>{c}</th>" for c in comparison.columns) + "</tr>"
    ]
    for r in comparison.results:
        cells = comparison.row(r)
        cls = "ok" if r.trusted else "warn"
        rows.append(
            "<tr>"
            + "".join(f"<td>{e(c)}</td>" for c in cells[:-1])
            + f"<td class='{cls}'>{e(cells[-1])}</td></tr>"
        )
    rows.append("</table>")
    body = head + rows
    for r in comparison.results:
        body.append(f"<h2 id='{e(r.name)}'>{e(r.name)}</h2>")
        if r.findings:
            body.append(
                "<ul class='warn'>" + "".join(f"<li>{e(f)}</li>" for f in r.findings) + "</ul>"
            )
        else:
            body.append("<p class='ok'>No problem found.</p>")
        body.append(
            "<table><tr><th>statistic</th><th>mean</th><th>MCSE</th><th>bulk ESS</th>"
            "<th>tail ESS</th><th>bulk ESS/s</th><th>split R-hat</th><th>tau</th></tr>"
        )
        per_second = r.ess_per_second("bulk")
        for k, s in r.statistics.items():
            body.append(
                f"<tr><td>{e(k)}</td><td>{_fmt(s.mean, 4)}</td><td>{_fmt(s.mcse, 4)}</td>"
                f"<td>{_fmt(s.ess_bulk, 0)}</td><td>{_fmt(s.ess_tail, 0)}</td>"
                f"<td>{_fmt(per_second[k], 1)}</td><td>{_fmt(s.rhat, 3)}</td>"
                f"<td>{_fmt(s.tau, 1)}</td></tr>"
            )
        body.append("</table>")
        if r.swap_rates is not None:
            body.append(
                "<p>Ladder: "
                + ", ".join(f"{b:.3f}" for b in r.betas)
                + "; swap rates: "
                + ", ".join(f"{s:.2f}" for s in r.swap_rates)
                + f"; round trips: {r.round_trips}.</p>"
            )
        if r.traces:
            lag = max(10, min(200, int(3 * max(min(s.tau, 1e6) for s in r.statistics.values()))))
            body.append(
                f"<img alt='{e(r.name)} traces' src='{_png(trace_figure(r.traces, r.name))}'>"
            )
            body.append(
                f"<img alt='{e(r.name)} autocorrelation' "
                f"src='{_png(autocorrelation_figure(r.traces, r.name, lag))}'>"
            )
    body.append("</body></html>")
    path.write_text("\n".join(body), encoding="utf-8")
    return path

#!/usr/bin/env python3
"""Renders the Grafana dashboard's panels from a real Prometheus, as a PNG.

Grafana is not needed: every panel's own queries (read from the dashboard JSON, with
$__rate_interval replaced) are run against Prometheus' query_range API over the given
window and drawn with matplotlib at the panel's grid position, timeseries as lines and
the heatmap as a heatmap. It is a faithful stand-in for a screenshot of the dashboard,
not Grafana's own drawing.

    python3 render.py --prometheus http://127.0.0.1:19090 --start T0 --end T1 --out x.png
"""

import argparse
import json
import math
import urllib.parse
import urllib.request
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

GRAFANA_COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9",
                  "#8ab8ff", "#fade2a", "#96d98d", "#ffb357", "#ca95e5", "#ff7383"]


def query_range(base, expr, start, end, step):
    params = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt or "{{__name__}}"
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def scale(unit, values):
    if unit == "percentunit":
        return [v * 100 for v in values], "%"
    if unit == "s":
        return [v * 1000 for v in values], "ms"
    return values, {"ops": "/s", "reqps": "req/s", "Bps": "B/s"}.get(unit, "")


def draw_timeseries(ax, panel, base, start, end, step, rate):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    i = 0
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", rate)
        for series in query_range(base, expr, start, end, step):
            xs = [datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
            ys = [float(v) if v not in ("NaN", "+Inf", "-Inf") else math.nan
                  for _, v in series["values"]]
            ys, suffix = scale(unit, ys)
            ax.plot(xs, ys, color=GRAFANA_COLORS[i % len(GRAFANA_COLORS)], linewidth=1.4,
                    label=legend(target.get("legendFormat"), series["metric"]))
            ax.set_ylabel(suffix, color="#9fa7b3", fontsize=7)
            i += 1
    if i:
        ax.legend(loc="upper left", fontsize=6, frameon=False, labelcolor="#ccccdc",
                  ncol=2 if i > 4 else 1)
    else:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", color="#9fa7b3")


def draw_heatmap(ax, panel, base, start, end, step, rate):
    expr = panel["targets"][0]["expr"].replace("$__rate_interval", rate)
    result = query_range(base, expr, start, end, step)
    buckets = sorted(result, key=lambda s: float(s["metric"]["le"]))
    if not buckets:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", color="#9fa7b3")
        return
    times = [float(t) for t, _ in buckets[0]["values"]]
    cumulative = [[float(v) for _, v in s["values"]] for s in buckets]
    # Cumulative `le` buckets to per-bucket counts.
    rows = [cumulative[0]] + [[max(0.0, b - a) for a, b in zip(lower, upper)]
                              for lower, upper in zip(cumulative, cumulative[1:])]
    labels = []
    for s in buckets:
        le = s["metric"]["le"]
        labels.append("+Inf" if le == "+Inf" else f"{float(le) * 1000:g} ms")
    xs = [datetime.fromtimestamp(t) for t in times]
    ax.pcolormesh(xs, range(len(rows)), rows, cmap="Oranges", shading="nearest")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboard", default="../grafana/dashboards/switchyard.json")
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--step", default="2")
    parser.add_argument("--rate-interval", default="10s",
                        help="what $__rate_interval becomes (4 scrapes or more)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dashboard = json.load(open(args.dashboard))
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    cell = 0.36  # inches per grid unit of height
    fig = plt.figure(figsize=(24 * 0.75, rows * cell), facecolor="#111217")
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        bottom, height = 1 - (g["y"] + g["h"]) / rows, g["h"] / rows
        if panel["type"] == "row":
            fig.text(left + 0.005, bottom + height / 2, panel["title"], color="#ccccdc",
                     fontsize=11, weight="bold", va="center")
            continue
        ax = fig.add_axes([left + 0.03, bottom + 0.012, width - 0.045, height - 0.045],
                          facecolor="#181b1f")
        ax.set_title(panel["title"], color="#ccccdc", fontsize=9, loc="left")
        ax.tick_params(colors="#9fa7b3", labelsize=6)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.5)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        draw = draw_heatmap if panel["type"] == "heatmap" else draw_timeseries
        draw(ax, panel, args.prometheus, args.start, args.end, args.step, args.rate_interval)
        ax.set_xlim(datetime.fromtimestamp(args.start), datetime.fromtimestamp(args.end))
    fig.text(0.995, 0.002, f"{dashboard['title']}: rendered from Prometheus by "
             "observability/render/render.py (not Grafana)", color="#6e7079", fontsize=7,
             ha="right")
    fig.savefig(args.out, dpi=80, facecolor=fig.get_facecolor())
    print(args.out)


if __name__ == "__main__":
    main()

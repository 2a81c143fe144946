#!/usr/bin/env python3
"""Turns the samples of scripts/bench.sh into its table and JSON file.

Input: a JSON-lines file, one sample per line:
  {"suite": "intake", "figure": "notifications accepted", "unit": "/s",
   "value": 1234.5, "floor": 2345.6}      ("floor" only where one is defined)
Samples with the same suite and figure are runs of one measurement. Each
figure is reported as its median, its spread (lowest and highest sample, and
the half-range as a share of the median) and, where floors were measured,
the ratio of the median to the median floor.

Usage: bench_report.py SAMPLES.jsonl OUT.json [key=value ...]
The key=value pairs (date, machine, command, ...) go into the JSON's header.
"""

import json
import statistics
import sys


def fmt(value):
    """A number with three significant digits, thousands separated."""
    if value is None:
        return ""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def summarise(samples):
    figures = {}
    for sample in samples:
        key = (sample["suite"], sample["figure"])
        figure = figures.setdefault(
            key,
            {
                "suite": sample["suite"],
                "figure": sample["figure"],
                "unit": sample.get("unit", ""),
                "samples": [],
                "floors": [],
                "notes": [],
            },
        )
        figure["samples"].append(float(sample["value"]))
        if sample.get("floor") is not None:
            figure["floors"].append(float(sample["floor"]))
        if sample.get("note") and sample["note"] not in figure["notes"]:
            figure["notes"].append(sample["note"])
    rows = []
    for figure in figures.values():
        values = figure["samples"]
        median = statistics.median(values)
        low, high = min(values), max(values)
        row = {
            "suite": figure["suite"],
            "figure": figure["figure"],
            "unit": figure["unit"],
            "runs": len(values),
            "median": median,
            "min": low,
            "max": high,
            "spread_pct": (high - low) / 2 / median * 100 if median else None,
            "samples": values,
        }
        if figure["floors"]:
            floor = statistics.median(figure["floors"])
            row["floor"] = floor
            row["floor_samples"] = figure["floors"]
            row["ratio_to_floor"] = median / floor if floor else None
        if figure["notes"]:
            row["notes"] = figure["notes"]
        rows.append(row)
    return rows


def table(rows):
    header = ["suite", "figure", "median", "unit", "spread (min-max)", "runs", "floor", "x floor"]
    lines = []
    for row in rows:
        spread = f"{fmt(row['min'])}-{fmt(row['max'])}"
        if row["spread_pct"] is not None:
            spread += f" (±{row['spread_pct']:.0f}%)"
        lines.append(
            [
                row["suite"],
                row["figure"],
                fmt(row["median"]),
                row["unit"],
                spread,
                str(row["runs"]),
                fmt(row.get("floor")),
                f"{row['ratio_to_floor']:.2f}" if row.get("ratio_to_floor") else "",
            ]
        )
    widths = [max(len(cells[i]) for cells in [header] + lines) for i in range(len(header))]
    right = {2, 5, 6, 7}

    def render(cells):
        return "| " + " | ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ) + " |"

    out = [render(header)]
    out.append("|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
    out.extend(render(cells) for cells in lines)
    return "\n".join(out)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as handle:
        samples = [json.loads(line) for line in handle if line.strip()]
    rows = summarise(samples)
    header = dict(argument.split("=", 1) for argument in sys.argv[3:])
    with open(sys.argv[2], "w") as handle:
        json.dump({**header, "figures": rows}, handle, indent=2)
        handle.write("\n")
    print(table(rows))
    for row in rows:
        for note in row.get("notes", []):
            print(f"- {row['suite']} / {row['figure']}: {note}")


if __name__ == "__main__":
    main()

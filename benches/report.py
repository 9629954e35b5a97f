#!/usr/bin/env python3
"""Print criterion medians from target/criterion as ratios to each group's baseline.

Usage: python3 benches/report.py [GROUP ...]
The baseline of a group is the bench whose id starts with "governor", "tower_governor",
"baseline" or "redis_benchmark"; the ratio is median time / baseline median time.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
BASELINES = ("governor", "tower_governor", "baseline", "redis_benchmark", "bare")


def medians(group_dir):
    out = {}
    for est in sorted(group_dir.rglob("new/estimates.json")):
        bench = est.parent.parent.relative_to(group_dir).as_posix()
        median = json.loads(est.read_text())["median"]["point_estimate"]
        out[bench] = median
    return out


def main():
    wanted = set(sys.argv[1:])
    for group_dir in sorted(p for p in ROOT.iterdir() if p.is_dir() and p.name != "report"):
        if wanted and group_dir.name not in wanted:
            continue
        rows = medians(group_dir)
        base = next((v for k, v in rows.items() if k.split("/")[0] in BASELINES and k.endswith("/1") or k in BASELINES), None)
        print(f"\n{group_dir.name}")
        for bench, median in rows.items():
            ratio = f"{median / base:5.2f}x" if base else ""
            print(f"  {bench:<40} {median:10.1f} ns  {ratio}")


if __name__ == "__main__":
    main()

"""The table of scripts/bench_deploy.sh: faststyle against ONNX Runtime and PyTorch eager on the
CPU (forward passes per size and thread count, the whole job as processes) and the memory of
tiled and untiled `infer` per photo size.

usage: bench_deploy_table.py RESULTS_DIR [--markdown OUT]

Ratios are "how many times better faststyle is": baseline time / our time, baseline memory /
our memory. Above 1 means faststyle wins.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_table import parse_time_v  # noqa: E402


def records(results):
    recs = []
    for path in glob.glob(os.path.join(results, "*.jsonl")):
        with open(path) as f:
            recs += [json.loads(line) for line in f if line.strip().startswith("{")]
    for path in glob.glob(os.path.join(results, "forward_torch_*.json")):
        d = json.load(open(path))
        for r in d["results"]:
            recs.append({"bench": "forward", "impl": "pytorch", "width": r["size"], "height": r["size"],
                         "precision": r["precision"], "median_ms": r.get("median_ms"),
                         "threads": d.get("threads")})
    return recs


def ms(v):
    return "—" if v is None else (f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms")


def ratio(base, ours):
    return "—" if not base or not ours else f"{base / ours:.2f}×"


def forward_table(recs):
    fw = [r for r in recs if r.get("bench") == "forward" and r.get("median_ms")]
    by = {(r["impl"], r["width"], r["threads"], r["precision"]): r["median_ms"] for r in fw}
    keys = sorted({(r["width"], r["threads"]) for r in fw})
    lines = ["| forward pass | threads | faststyle fp32 | ONNX Runtime | PyTorch eager | vs ONNX Runtime | vs PyTorch | faststyle bf16 | bf16 vs ONNX Runtime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for size, threads in keys:
        ours = by.get(("faststyle", size, threads, "fp32"))
        ort = by.get(("onnxruntime", size, threads, "fp32"))
        torch = by.get(("pytorch", size, threads, "fp32"))
        bf16 = by.get(("faststyle", size, threads, "bf16"))
        lines.append(f"| {size}² | {threads} | {ms(ours)} | {ms(ort)} | {ms(torch)} | {ratio(ort, ours)} | "
                     f"{ratio(torch, ours)} | {ms(bf16)} | {ratio(ort, bf16)} |")
    return lines


def job_table(results):
    by = {}
    for path in glob.glob(os.path.join(results, "job_*.time")):
        m = re.match(r"job_(.+)_(\d+)\.time$", os.path.basename(path))
        t = parse_time_v(path)
        if m and t and t.get("exit", 0) == 0:
            by.setdefault(m.group(1), []).append(t)
    if "faststyle" not in by:
        return []

    def med(impl, key):
        v = [t[key] for t in by.get(impl, [])]
        return statistics.median(v) if v else None

    lines = ["| whole job (process) | faststyle | ONNX Runtime | PyTorch eager | vs ONNX Runtime | vs PyTorch |",
             "|---|---|---|---|---|---|"]
    o, r, p = med("faststyle", "wall_s"), med("onnxruntime", "wall_s"), med("pytorch", "wall_s")
    fmt = lambda v: "—" if v is None else f"{v:.2f} s"  # noqa: E731
    lines.append(f"| wall, median of {len(by['faststyle'])} | {fmt(o)} | {fmt(r)} | {fmt(p)} | {ratio(r, o)} | {ratio(p, o)} |")
    o, r, p = (med(i, "max_rss_kb") for i in ("faststyle", "onnxruntime", "pytorch"))
    mib = lambda v: "—" if v is None else f"{v / 1024:.0f} MiB"  # noqa: E731
    lines.append(f"| peak RSS | {mib(o)} | {mib(r)} | {mib(p)} | {ratio(r, o)} | {ratio(p, o)} |")
    return lines


def memory_table(results, recs):
    rows = {}
    for path in glob.glob(os.path.join(results, "mem_*.time")):
        m = re.match(r"mem_(\d+)x(\d+)_(\w+)\.time$", os.path.basename(path))
        t = parse_time_v(path)
        if m and t:
            rows.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = t
    if not rows:
        return []
    diffs = {r["size"]: r for r in recs if r.get("bench") == "tiled-diff"}
    lines = ["| photo | MP | untiled peak RSS | untiled s/MP | tiled (auto) peak RSS | tiled s/MP | tiled/untiled time | max diff |",
             "|---|---|---|---|---|---|---|---|"]
    for (w, h), modes in sorted(rows.items(), key=lambda kv: kv[0][0] * kv[0][1]):
        mp = w * h / 1e6

        def cell(mode):
            t = modes.get(mode)
            if not t or t.get("exit", 0) != 0:
                return "—", "—", None
            return f"{t['max_rss_kb'] / 1024:.0f} MiB", f"{t['wall_s'] / mp:.2f}", t["wall_s"] / mp
        off_rss, off_s, off_v = cell("off")
        on_rss, on_s, on_v = cell("auto")
        rel = f"{on_v / off_v:.2f}×" if on_v and off_v else "—"
        d = diffs.get(f"{w}x{h}")
        diff = f"{d['max']}/255 ({100 * d['share_differing']:.2f}% differ)" if d else "—"
        lines.append(f"| {w}×{h} | {mp:.1f} | {off_rss} | {off_s} | {on_rss} | {on_s} | {rel} | {diff} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    recs = records(a.results)
    env_path = os.path.join(a.results, "env.json")
    out = ["## faststyle vs ONNX Runtime and PyTorch on the CPU", ""]
    if os.path.exists(env_path):
        env = json.load(open(env_path))
        out += ["Machine: " + "; ".join(f"{k} {v}" for k, v in env.items()), ""]
    for part in (forward_table(recs), job_table(a.results), memory_table(a.results, recs)):
        if part:
            out += part + [""]
    out += [f"- {r['text']}" for r in recs if r.get("bench") == "note"]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.markdown:
        open(a.markdown, "w").write(text)


if __name__ == "__main__":
    main()

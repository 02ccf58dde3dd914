"""Time to quality: the tables and the plot of scripts/bench/ttq.sh, and its time model.

usage:
  ttq_report.py iterations OUT --budget E [-- TRAIN FLAGS...]
      the iterations of a `train --recipe fast` run with those flags that take the time of
      E iterations of the example's loop at its best CPU setting (OUT/time.jsonl)
  ttq_report.py report OUT [--plot FILE] [--budgets 200,800,3200] [--lever-budget 100]
      OUT/ttq.md (tables: time to the example's held-out loss, levers) and OUT/ttq.png

The time model: every run's held-out losses are recorded against iterations (images seen),
whatever the machine's load; its wall time is the sum over its phases of iterations x the
seconds per iteration of that kind of step (crop size, precision, batch), measured for all
kinds in one run of ttq_time.sh, taking turns under flock. The example's seconds per
iteration are its best of three settings (faithful fp32, tuned fp32, tuned bf16).
"""
import argparse
import glob
import json
import math
import os
import statistics
import sys

# The lever of ttq.sh that starts the fast recipe from the example's initial weights, not the base.
INIT_LABEL = "example's init"
# The fast recipe's defaults that change a run's time (keep in step with train/recipe.rs).
FAST_DEFAULTS = {"progressive": 0.0, "batch_size": 4, "image_size": 128}


def step_times(out):
    """{label: mean seconds per iteration} from OUT/time.jsonl, and the example's best."""
    rows = [json.loads(l) for l in open(os.path.join(out, "time.jsonl")) if l.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r["s_per_iter"])
    means = {k: statistics.mean(v) for k, v in by.items()}
    example = {k: v for k, v in means.items() if k.startswith("example/")}
    best = min(example, key=example.get)
    return means, best


def ours_label(size, precision, batch):
    return f"ours/{size}-{precision}-b{batch}"


def half_size(size):
    return max(size // 2 // 4 * 4, 16)


def run_seconds(means, iterations, progressive, batch, size, precision):
    """Modelled seconds of a run of ours."""
    small = round(progressive * iterations)
    parts = [(small, half_size(size)), (iterations - small, size)]
    total = 0.0
    for n, s in parts:
        if n == 0:
            continue
        label = ours_label(s, precision, batch)
        if label not in means:
            raise SystemExit(f"ttq_report: no timing of {label} in time.jsonl (add it to ttq_time.sh OURS)")
        total += n * means[label]
    return total


def flag(flags, name, default, kind=float):
    if name in flags:
        return kind(flags[flags.index(name) + 1])
    return default


def cmd_iterations(a):
    means, best = step_times(a.out)
    flags = a.flags
    p = flag(flags, "--progressive", FAST_DEFAULTS["progressive"])
    b = flag(flags, "--batch-size", FAST_DEFAULTS["batch_size"], int)
    size = flag(flags, "--image-size", FAST_DEFAULTS["image_size"], int)
    per_iter = run_seconds(means, 1000, p, b, size, "bf16") / 1000
    print(max(1, round(a.budget * means[best] / per_iter)))


def load_evals(out):
    """{model: its evaluation} of one-style models, and the rows of the several-style ones
    (one row per style of the same model)."""
    evals, multi = {}, []
    path = os.path.join(out, "eval.jsonl")
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                if "/multi/" in r["model"] or "/multi-" in r["model"]:
                    multi.append(r)
                else:
                    evals[r["model"]] = r
    return evals, multi


def example_curves(out, evals, means, best):
    """{style: [(iterations, seconds, total, content, style)]} of the example's loop."""
    curves = {}
    for model in glob.glob(os.path.join(out, "example", "*", "step-*.safetensors")):
        if model not in evals:
            continue
        style = os.path.basename(os.path.dirname(model))
        n = int(os.path.basename(model)[5:-12])
        e = evals[model]
        curves.setdefault(style, []).append((n, n * means[best], e["total"], e["content"], e["style_loss"]))
    return {k: sorted(v) for k, v in curves.items()}


def fast_runs(out, evals, means):
    """[{style, label, budget, iterations, seconds, total, ...}] of the runs of ours."""
    runs = []
    for model in glob.glob(os.path.join(out, "fast", "*", "*", "*.safetensors")):
        if model.endswith(".state.safetensors") or model not in evals:
            continue
        d = os.path.dirname(model)
        config = json.load(open(os.path.join(d, "logs", "config.json")))
        n = config["iterations"]
        recipe = config.get("recipe", {})
        secs = run_seconds(means, n, recipe.get("progressive", 0.0), config["batch_size"],
                           config["image_size"], config["precision"])
        e = evals[model]
        runs.append({"style": os.path.basename(os.path.dirname(d)),
                     "label": open(os.path.join(d, "label")).read().strip(),
                     "budget": int(d.rsplit("-E", 1)[1]), "iterations": n, "seconds": secs,
                     "total": e["total"], "content": e["content"], "style_loss": e["style_loss"],
                     "images": n * config["batch_size"]})
    return runs


def time_to_reach(points, target):
    """Seconds at which a list of (seconds, loss), one run per budget, first reaches `target`:
    log-log interpolation between the two budgets around it. (value, how): how is 'at most'
    when the smallest budget is already below, 'not reached' when none is."""
    points = sorted(points)
    if not points:
        return None, "no runs"
    if points[0][1] <= target:
        return points[0][0], "at most"
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if l1 <= target < l0:
            f = (math.log(l0) - math.log(target)) / (math.log(l0) - math.log(l1))
            return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0))), "interpolated"
    return None, "not reached"


def fmt_s(s):
    if s is None:
        return "—"
    return f"{s / 60:.1f} min" if s >= 600 else f"{s:.0f} s"


def cmd_report(a):
    out = a.out
    means, best = step_times(out)
    evals, multi = load_evals(out)
    curves = example_curves(out, evals, means, best)
    runs = fast_runs(out, evals, means)
    md = ["# Time to quality", ""]
    md.append(f"Seconds per iteration (mean of the rounds in time.jsonl); the example's side is "
              f"timed at its best, `{best}`:")
    md.append("")
    md.append("| kind of step | s / iteration | vs the example's best |")
    md.append("|---|---|---|")
    for k in sorted(means):
        md.append(f"| {k} | {means[k]:.3f} | {means[k] / means[best]:.2f} |")
    md.append("")
    md.append("| style | example budget | example's held-out loss | example's time | fast reaches it in | ratio | target | fast at that budget's time |")
    md.append("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for style, curve in sorted(curves.items()):
        fast = [(r["seconds"], r["total"]) for r in runs if r["style"] == style and r["label"] == "fast"]
        longest = max(n for n, *_ in curve)
        for n, secs, total, _, _ in curve:
            if n not in a.budgets:
                continue
            target = 1 / 4 if n == longest and n > 800 else 1 / 8
            t, how = time_to_reach(fast, total)
            ratio = (t / secs) if t is not None else None
            same = [r for r in runs if r["style"] == style and r["label"] == "fast" and r["budget"] == n]
            at_budget = f"{same[0]['total']:.3e}" if same else "not run"
            ok = ratio is not None and ratio <= target
            verdicts.append((style, n, ok, ratio, target))
            rtxt = "—" if ratio is None else (("≤ " if how == "at most" else "") + f"1/{1 / ratio:.1f}")
            md.append(f"| {style} | {n} it | {total:.3e} | {fmt_s(secs)} | "
                      f"{fmt_s(t) if t else how} | {rtxt} | 1/{round(1 / target)} | {at_budget} |")
    md.append("")
    levers = [r for r in runs if r["label"] != "fast" or r["budget"] == a.lever_budget]
    styles = sorted({r["style"] for r in levers if r["label"] != "fast"})
    if styles:
        md.append(f"Levers at a budget of {a.lever_budget} example iterations' time (held-out total loss; "
                  f"ratio to the fast recipe's, below 1 is better):")
        md.append("")
        md.append("| lever | " + " | ".join(f"{s} loss | {s} ratio | {s} iterations" for s in styles) + " |")
        md.append("|---|" + "---|---|---|" * len(styles))
        labels = []
        for r in levers:
            if r["label"] not in labels and r["budget"] == a.lever_budget:
                labels.append(r["label"])
        for label in labels:
            cells = []
            for s in styles:
                mine = [r for r in levers if r["style"] == s and r["label"] == label and r["budget"] == a.lever_budget]
                base = [r for r in levers if r["style"] == s and r["label"] == "fast" and r["budget"] == a.lever_budget]
                if mine and base:
                    cells += [f"{mine[0]['total']:.3e}", f"{mine[0]['total'] / base[0]['total']:.3f}",
                              str(mine[0]["iterations"])]
                else:
                    cells += ["—", "—", "—"]
            md.append(f"| {label} | " + " | ".join(cells) + " |")
        md.append("")
    if multi:
        md.append("Several styles in one network (fast recipe), against the one-style fast run of "
                  "1/N of its time budget (target: each within 1.15×):")
        md.append("")
        md.append("| network | style | held-out loss, N styles | one style | ratio | content ratio | style ratio |")
        md.append("|---|---|---|---|---|---|---|")
        for r in sorted(multi, key=lambda r: (r["model"], r["style"])):
            run_dir = os.path.dirname(r["model"])
            d = os.path.basename(run_dir)
            n = len(d.rsplit("-E", 1)[0].split("+"))
            budget = int(d.rsplit("-E", 1)[1]) // n
            label = os.path.basename(os.path.dirname(run_dir))[len("multi-"):]
            d = f"{d} ({label})" if label else d
            one = [x for x in runs if x["style"] == r["style"] and x["label"] == "fast" and x["budget"] == budget]
            if not one:
                continue
            o = one[0]
            md.append(f"| {d} | {r['style']} | {r['total']:.3e} | {o['total']:.3e} | {r['total'] / o['total']:.3f} | "
                      f"{r['content'] / o['content']:.3f} | {r['style_loss'] / o['style_loss']:.3f} |")
        md.append("")
    aug = [r for r in runs if r["label"] == "augment"]
    if aug:
        md.append("`--augment` against centre crops (fast recipe, same time budget):")
        md.append("")
        md.append("| style | budget | centre crops | augmented | ratio |")
        md.append("|---|---|---|---|---|")
        for r in sorted(aug, key=lambda r: (r["style"], r["budget"])):
            plain = [x for x in runs if x["style"] == r["style"] and x["label"] == "fast" and x["budget"] == r["budget"]]
            if plain:
                md.append(f"| {r['style']} | {r['budget']} | {plain[0]['total']:.3e} | {r['total']:.3e} | "
                          f"{r['total'] / plain[0]['total']:.3f} |")
        md.append("")
    md.append("Runs of ours (all): style, label, budget (example iterations), iterations, modelled seconds, held-out total")
    md.append("")
    for r in sorted(runs, key=lambda r: (r["style"], r["label"], r["budget"])):
        md.append(f"- {r['style']} · {r['label']} · E{r['budget']} · {r['iterations']} it · "
                  f"{r['seconds']:.0f} s · {r['total']:.4e} (content {r['content']:.3e}, style {r['style_loss']:.3e})")
    md.append("")
    with open(os.path.join(out, "ttq.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    plot(a.plot or os.path.join(out, "ttq.png"), curves, runs, a.budgets)
    with open(os.path.join(out, "verdicts.json"), "w") as f:
        json.dump(verdicts, f)


def plot(path, curves, runs, budgets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    styles = sorted(curves)
    fig, axes = plt.subplots(1, len(styles), figsize=(4.6 * len(styles), 3.9), squeeze=False)
    for ax, style in zip(axes[0], styles):
        c = curves[style]
        ax.plot([p[1] / 60 for p in c], [p[2] for p in c], "o-", color="#888888", ms=3.5,
                label="PyTorch example's loop (lr 1e-3)")
        for label, mark, colour, legend in (
                ("fast", "s-", "#d62728", "train --recipe fast, from the base (one run per budget)"),
                (INIT_LABEL, "^--", "#1f77b4", "the same from the example's initial weights"),
                ("no decay", "^", "#2ca02c", "--recipe fast --decay none")):
            pts = sorted((r["seconds"], r["total"]) for r in runs if r["style"] == style and r["label"] == label)
            if pts:
                ax.plot([t / 60 for t, _ in pts], [l for _, l in pts], mark, color=colour, ms=4,
                        label=legend)
        for n, secs, total, _, _ in c:
            if n in budgets:
                ax.axhline(total, color="#888888", lw=0.6, ls=":")
                # At the example's own point, so that close levels do not overprint.
                ax.annotate(f"example at {n} it", (secs / 60, total), fontsize=7, color="#555555",
                            va="bottom", ha="center")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(style)
        ax.set_xlabel("wall time on this CPU (min, modelled)")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    axes[0][0].set_ylabel("held-out loss at 256 px (content + style)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"ttq_report: {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    it = sub.add_parser("iterations")
    it.add_argument("out")
    it.add_argument("--budget", type=float, required=True)
    rp = sub.add_parser("report")
    rp.add_argument("out")
    rp.add_argument("--plot")
    rp.add_argument("--lever-budget", type=int, default=100)
    rp.add_argument("--budgets", default="200,800,3200",
                    help="the example budgets (iterations) that the table compares")
    a, rest = ap.parse_known_args()
    if a.cmd == "iterations":
        a.flags = [x for x in rest if x != "--"]  # the train flags after `--`
    elif rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if a.cmd == "report":
        a.budgets = {int(b) for b in a.budgets.split(",") if b}
    {"iterations": cmd_iterations, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()

"""Tables of scripts/quality_cpu.sh's figures (markdown on stdout).

usage: quality_table.py OUT K

OUT/evaluate.jsonl: `quality-bench evaluate` lines; OUT/step-time.jsonl: `quality-bench
step-time` lines. K: the iterations of each one-style model (the two-style model had 2K).
"""
import json
import os
import sys


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    out, k = sys.argv[1], int(sys.argv[2])
    rows = lines(os.path.join(out, "evaluate.jsonl"))
    by = {(os.path.basename(r["model"]), r["style"]): r for r in rows}
    one = {"udnie": by[("udnie.safetensors", "udnie")],
           "starry-night": by[("starry-night.safetensors", "starry-night")]}
    two = {s: by[("udnie+starry-night.safetensors", s)] for s in one}

    print(f"Held-out losses ({rows[0]['photos']} photos): two-style model, {2 * k} iterations, "
          f"against one-style models of {k} iterations each\n")
    print("| style | one-style content | two-style content | ratio | one-style style | two-style style | ratio |")
    print("|---|---|---|---|---|---|---|")
    for s in one:
        a, b = one[s], two[s]
        print(f"| {s} | {a['content']:.4g} | {b['content']:.4g} | {b['content'] / a['content']:.3f} "
              f"| {a['style_loss']:.4g} | {b['style_loss']:.4g} | {b['style_loss'] / a['style_loss']:.3f} |")

    steps = {r["kind"]: r for r in lines(os.path.join(out, "step-time.jsonl")) if "kind" in r}
    t_full, t_add = steps["full"]["ms_per_step"], steps["add-style"]["ms_per_step"]
    ref = one["starry-night"]
    print(f"\nstarry-night added to the one-style udnie model ({k} iterations) against "
          f"starry-night from scratch ({k} iterations: content {ref['content']:.4g}, "
          f"style {ref['style_loss']:.4g}, total {ref['total']:.4g}); a full step "
          f"{t_full:.0f} ms, an add-style step {t_add:.0f} ms\n")
    print("| add-style iterations | content | style | total | total vs scratch | wall time vs scratch |")
    print("|---|---|---|---|---|---|")
    added = sorted((int(m[len("add-"):-len(".safetensors")]), r) for (m, s), r in by.items()
                   if m.startswith("add-"))
    both = total = None
    for n, r in added:
        wall = n * t_add / (k * t_full)
        print(f"| {n} | {r['content']:.4g} | {r['style_loss']:.4g} | {r['total']:.4g} "
              f"| {r['total'] / ref['total']:.3f} | {wall:.3f} |")
        if both is None and r["content"] <= ref["content"] and r["style_loss"] <= ref["style_loss"]:
            both = (n, wall)
        if total is None and r["total"] <= ref["total"]:
            total = (n, wall)
    for what, hit in [("both losses at or below", both), ("total loss at or below", total)]:
        if hit:
            print(f"\n{what} the from-scratch model's after {hit[0]} iterations: "
                  f"{hit[1]:.3f} of its wall time")
        else:
            print(f"\n{what} the from-scratch model's: not within {k} iterations")


if __name__ == "__main__":
    main()

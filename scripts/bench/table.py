"""The benchmark harness's one table writer: joins a run's results into markdown tables, each
figure of ours beside its baseline with the ratio.

usage:
  table.py speed RESULTS_DIR [--title T] [--markdown OUT] [--jsonl OUT]   (cpu.sh, gpu.sh)
  table.py deploy RESULTS_DIR [--markdown OUT]                            (deploy.sh)
  table.py quality OUT_DIR --k K                                          (quality_cpu.sh)

speed: RESULTS_DIR holds what scripts/bench/cpu.sh or gpu.sh wrote:
  *.jsonl    one JSON object per line with "bench" and "impl" (speed-bench's output, and the
             small PyTorch helpers of the bench scripts)
  *.json     torch_infer.py --json (has "results") or torch_train.py --json (has "mode")
  job_IMPL_N.time   `/usr/bin/time -v` output of one whole-process job
  env.json   the machine (optional)
deploy: faststyle against ONNX Runtime and PyTorch eager on the CPU (forward passes per size
  and thread count, the whole job as processes) and the memory of tiled and untiled `infer`.
quality: OUT/evaluate.jsonl (`quality-bench evaluate` lines) and OUT/step-time.jsonl
  (`quality-bench step-time`); K: the iterations of each one-style model (two-style: 2K).

The ratio is always "how many times better faststyle is": baseline time / our time,
our rate / baseline rate, baseline memory / our memory. Above 1 means faststyle wins.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

# Default recipe of DESIGN.md: 2 epochs of COCO 2014 train.
COCO_IMAGES = 82783
RECIPE_IMAGES = 2 * COCO_IMAGES
# Issue 5: the physical cost of one training image (batch 4, 256x256, both VGG passes).
GFLOP_PER_TRAIN_IMAGE = 175.0


def load(results):
    recs = []
    for path in sorted(glob.glob(os.path.join(results, "*.jsonl"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if "bench" in r:
                    r.setdefault("impl", "faststyle")
                    r["_file"] = os.path.basename(path)
                    recs.append(r)
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        if os.path.basename(path) == "env.json":
            continue
        with open(path) as f:
            try:
                d = json.load(f)
            except ValueError:
                continue
        if "results" in d:  # torch_infer.py
            for r in d["results"]:
                recs.append({"bench": "forward", "impl": "pytorch", "device": d.get("device"),
                             "width": r["size"], "height": r["size"], "precision": r["precision"],
                             "median_ms": r.get("median_ms"), "error": r.get("error"),
                             "threads": d.get("threads"), "_file": os.path.basename(path)})
        elif "mode" in d:  # torch_train.py
            impl = "pytorch-" + d["mode"]
            cuda = str(d.get("device", "cpu")).startswith("cuda")
            prec = "bf16-autocast" if d["mode"] == "tuned" and cuda else "fp32"
            recs.append({"bench": "train-step", "impl": impl, "device": d.get("device"),
                         "precision": prec, "image_size": d["image_size"],
                         "batch_size": d["batch_size"], "iterations": d.get("iterations"),
                         "images_per_s": d["images_per_sec"], "losses_last": d.get("last_losses"),
                         "workers": d.get("workers"), "_file": os.path.basename(path)})
            recs.append({"bench": "loader", "impl": impl, "image_size": d["image_size"],
                         "batch_size": d["batch_size"], "images_per_s": d["data_images_per_sec"],
                         "workers": d.get("workers"), "via": "train", "_file": os.path.basename(path)})
    for path in sorted(glob.glob(os.path.join(results, "job_*.time"))):
        m = re.match(r"job_(.+)_(\d+)\.time$", os.path.basename(path))
        if not m:
            continue
        job = parse_time_v(path)
        if job:
            job.update({"bench": "job", "impl": m.group(1), "_file": os.path.basename(path)})
            recs.append(job)
    return recs


def parse_time_v(path):
    """Wall seconds, peak RSS (KiB) and exit status from `/usr/bin/time -v` output."""
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("Elapsed (wall clock) time"):
                t = line.rsplit(": ", 1)[1]
                secs = 0.0
                for part in t.split(":"):
                    secs = secs * 60 + float(part)
                out["wall_s"] = secs
            elif line.startswith("Maximum resident set size"):
                out["max_rss_kb"] = int(line.rsplit(": ", 1)[1])
            elif line.startswith("Exit status"):
                out["exit"] = int(line.rsplit(": ", 1)[1])
            elif line.startswith("User time"):
                out["user_s"] = float(line.rsplit(": ", 1)[1])
            elif line.startswith("System time"):
                out["sys_s"] = float(line.rsplit(": ", 1)[1])
    return out if "wall_s" in out else None


def size_name(w, h):
    return f"{w}²" if w == h else f"{w}×{h}"


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "img/s":
        return f"{v:.1f} img/s" if v < 1000 else f"{v:.0f} img/s"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    return f"{v:.4g} {unit}"


class Table:
    def __init__(self):
        self.rows = []
        self.notes = []

    def add(self, what, ours, unit, base_name, base, lower_is_better, target=None):
        ratio = None
        if ours is not None and base is not None and ours > 0 and base > 0:
            ratio = base / ours if lower_is_better else ours / base
        verdict = ""
        if target is not None and ratio is not None:
            verdict = f" ({'meets' if ratio >= target else 'misses'} ≥{target:g}×)"
        self.rows.append((what, fmt(ours, unit), base_name, fmt(base, unit),
                          ("—" if ratio is None else f"{ratio:.2f}×") + verdict))

    def markdown(self):
        head = ("what", "faststyle", "baseline", "baseline value", "ratio (>1: faststyle better)")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def forward_rows(t, recs):
    fw = [r for r in recs if r["bench"] == "forward" and r.get("median_ms") is not None]
    errors = [r for r in recs if r["bench"] == "forward" and r.get("error")]

    def dev(r):
        return "cuda" if str(r.get("device", "cpu")).startswith("cuda") else "cpu"

    ours = {(dev(r), r["width"], r["height"], r["precision"]): r["median_ms"]
            for r in fw if r["impl"] == "faststyle"}
    torch = {(dev(r), r["width"], r["height"], r["precision"]): r["median_ms"]
             for r in fw if r["impl"] == "pytorch"}
    order = {"fp32": 0, "fp16": 1, "bf16": 2}
    keys = sorted(set(ours) | set(torch), key=lambda k: (k[0], k[1] * k[2], order.get(k[3], 9)))
    for k in keys:
        d, w, h, p = k
        what = f"forward {size_name(w, h)} {d} {p}"
        t.add(what, ours.get(k), "ms", f"PyTorch eager {p}", torch.get(k), True)
        if p != "fp32" and (d, w, h, "fp32") in torch and k in ours:
            t.add(what, ours.get(k), "ms", "PyTorch eager fp32", torch[(d, w, h, "fp32")], True,
                  target=2.0)
    # Issue 5's absolute bars for infer on the GPU, in half precision.
    for (w, h, bar) in ((1024, 1024, 3.0), (3840, 2160, 20.0)):
        for p in ("fp16", "bf16"):
            v = ours.get(("cuda", w, h, p))
            if v is not None:
                t.notes.append(f"forward {size_name(w, h)} cuda {p}: {v:.2f} ms, "
                               f"{'under' if v < bar else 'NOT under'} the {bar:g} ms bar")
    for r in errors:
        if r.get("precision") != "fp32" and str(r.get("device")) == "cpu":
            continue  # half precision on the CPU: refused by design
        t.notes.append(f"forward {size_name(r['width'], r['height'])} {r.get('precision')} "
                       f"({r['impl']}): failed: {r['error']}")


def job_rows(t, recs):
    jobs = [r for r in recs if r["bench"] == "job"]
    by = {}
    for r in jobs:
        by.setdefault(r["impl"], []).append(r)
    if "faststyle" not in by and "pytorch" not in by:
        return
    for impl, rs in by.items():
        bad = [r for r in rs if r.get("exit", 0) != 0]
        if bad:
            t.notes.append(f"whole job ({impl}): {len(bad)} of {len(rs)} runs exited non-zero")

    def med(impl, key, scale=1.0):
        rs = [r[key] for r in by.get(impl, []) if key in r and r.get("exit", 0) == 0]
        return statistics.median(rs) * scale if rs else None

    n = max(len(by.get("faststyle", [])), len(by.get("pytorch", [])))
    t.add(f"whole infer job, wall (median of {n})", med("faststyle", "wall_s"), "s",
          "PyTorch eager process", med("pytorch", "wall_s"), True, target=1.0)
    t.add(f"whole infer job, peak RSS (median of {n})", med("faststyle", "max_rss_kb", 1 / 1024),
          "MiB", "PyTorch eager process", med("pytorch", "max_rss_kb", 1 / 1024), True, target=1.0)
    cpu_o = med("faststyle", "user_s")
    cpu_t = med("pytorch", "user_s")
    if cpu_o is not None and cpu_t is not None:
        t.add("whole infer job, user CPU time", cpu_o, "s", "PyTorch eager process", cpu_t, True)


def train_rows(t, recs, targets):
    tr = [r for r in recs if r["bench"] == "train-step"]
    ours = [r for r in tr if r["impl"] == "faststyle"]
    base = {r["impl"]: r for r in tr if r["impl"] != "faststyle"}
    order = {"fp32": 0, "bf16": 1, "fp16": 2}
    for r in sorted(ours, key=lambda r: (r["image_size"], order.get(r["precision"], 9))):
        what = (f"training step {r['image_size']}², batch {r['batch_size']}, "
                f"{r.get('device', '')} {r['precision']}")
        for name in ("pytorch-faithful", "pytorch-tuned"):
            b = base.get(name)
            if b is None or b["image_size"] != r["image_size"] or b["batch_size"] != r["batch_size"]:
                continue
            label = ("PyTorch example loop (faithful)" if name == "pytorch-faithful"
                     else f"PyTorch tuned ({b['precision']}, {b.get('workers')} workers)")
            t.add(what, r["images_per_s"], "img/s", label, b["images_per_s"], False,
                  target=targets.get(name))
        if not any(n in base for n in ("pytorch-faithful", "pytorch-tuned")):
            t.add(what, r["images_per_s"], "img/s", "—", None, False)
    # Derived figures for the default recipe on a GPU.
    for r in ours:
        if str(r.get("device", "")).startswith("cuda") and r["image_size"] == 256 \
                and r["batch_size"] == 4:
            ips = r["images_per_s"]
            t.notes.append(
                f"default recipe at {ips:.0f} img/s ({r['precision']}): 2 epochs of COCO "
                f"({RECIPE_IMAGES} images) ≈ {RECIPE_IMAGES / ips / 60:.1f} min of steps "
                f"(target < 3 min); ≈ {ips * GFLOP_PER_TRAIN_IMAGE / 1000:.0f} TFLOP/s at "
                f"{GFLOP_PER_TRAIN_IMAGE:g} GFLOP per image")


def loader_rows(t, recs):
    ld = [r for r in recs if r["bench"] == "loader"]
    ours = [r for r in ld if r["impl"] == "faststyle"]
    base = [r for r in ld if r["impl"] != "faststyle"]
    for r in ours:
        what = (f"data loading alone {r['image_size']}², batch {r['batch_size']} "
                f"({r.get('threads')} threads, {r.get('files')} files)")
        matched = False
        # Prefer a dedicated loader measurement over the one torch_train.py made on the
        # way (that one may be at another image size).
        for name in ("pytorch-faithful", "pytorch-tuned"):
            cands = [b for b in base if b["impl"] == name and b["image_size"] == r["image_size"]]
            cands.sort(key=lambda b: b.get("via") == "train")
            if cands:
                b = cands[0]
                label = ("PyTorch DataLoader, PIL, 0 workers (example)" if name == "pytorch-faithful"
                         else f"PyTorch DataLoader, PIL, {b.get('workers')} workers (tuned)")
                t.add(what, r["images_per_s"], "img/s", label, b["images_per_s"], False)
                matched = True
        if not matched:
            t.add(what, r["images_per_s"], "img/s", "—", None, False)


def infer_folder_rows(t, recs):
    fw = {(r["width"], r["height"], r["precision"]): r["median_ms"] for r in recs
          if r["bench"] == "forward" and r["impl"] == "faststyle" and r.get("median_ms")}
    for r in recs:
        if r["bench"] != "infer-folder":
            continue
        what = (f"infer over a folder: {r['images']} JPEGs {size_name(r['width'], r['height'])}, "
                f"{r['device']} {r['precision']} (whole process)")
        t.add(what, r["images_per_s"], "img/s", "—", None, False)
        if not r.get("ok", True):
            t.notes.append(f"{what}: infer exited non-zero")
        steady = r.get("images_per_s_after_startup")
        f1 = fw.get((r["width"], r["height"], r["precision"]))
        f2 = fw.get((r["height"], r["width"], r["precision"]))
        if steady and f1:
            mean_fwd = (f1 + f2) / 2 if f2 else f1
            t.notes.append(
                f"infer folder: {steady:.0f} img/s after start-up ({r.get('one_image_wall_s', 0):.2f} s "
                f"for a single photo); the forward pass alone at that size takes {mean_fwd:.2f} ms, "
                f"so the GPU computes ≈ {100 * steady * mean_fwd / 1000:.0f}% of the time")


def loss_rows(t, recs):
    ours = [r for r in recs if r["bench"] == "train-step" and r["impl"] == "faststyle"]
    ref = {(r["image_size"], r["batch_size"], r["steps"], r.get("seed")): r
           for r in ours if r["precision"] == "fp32"}
    lines = []
    for r in ours:
        if r["precision"] == "fp32":
            continue
        f = ref.get((r["image_size"], r["batch_size"], r["steps"], r.get("seed")))
        if f is None:
            continue
        for key, label in (("losses_mean_timed", f"mean of the last {r['iterations']} steps"),
                           ("losses_last", f"step {r['steps']}")):
            a, b = f.get(key) or {}, r.get(key) or {}
            cells = []
            worst = 0.0
            for part in ("content", "style", "total"):
                if part in a and part in b and a[part]:
                    rel = abs(b[part] - a[part]) / abs(a[part]) * 100
                    worst = max(worst, rel)
                    cells.append(f"{part} {a[part]:.4g} vs {b[part]:.4g} ({rel:.2f}%)")
            verdict = "within 1%" if worst <= 1.0 else "NOT within 1%"
            lines.append(f"| {r['precision']} vs fp32, {r['image_size']}² batch {r['batch_size']}, "
                         f"seed {r.get('seed')}, {label} | " + "; ".join(cells)
                         + f" | {verdict} |")
    return lines


def ratio(base, ours):
    return "—" if not base or not ours else f"{base / ours:.2f}×"


def machine(results):
    """The lines naming the machine, from RESULTS/env.json when the run wrote one."""
    path = os.path.join(results, "env.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        env = json.load(f)
    return ["Machine: " + "; ".join(f"{k} {v}" for k, v in env.items()), ""]


def write(lines, markdown=None):
    """Prints the table, and writes it to `markdown` too when given."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if markdown:
        with open(markdown, "w") as f:
            f.write(text)


def speed(a):
    recs = load(a.results)
    env = machine(a.results)
    cuda = any(str(r.get("device", "")).startswith("cuda") for r in recs)
    targets = {"pytorch-faithful": 3.0, "pytorch-tuned": 1.5} if cuda else \
        {"pytorch-faithful": 1.2, "pytorch-tuned": 1.2}

    t = Table()
    forward_rows(t, recs)
    job_rows(t, recs)
    train_rows(t, recs, targets)
    loader_rows(t, recs)
    infer_folder_rows(t, recs)
    loss_lines = loss_rows(t, recs)
    busy = [r for r in recs if r["bench"] == "busy"]
    if busy:
        t.notes.append("other work on the machine just before each part (CPU busy over 3 s): " + ", ".join(
            f"{r['part']} {r['cpu_busy_percent']}%" + (f" after waiting {r['waited_s']} s" if r.get("waited_s") else "")
            for r in busy))

    out = [f"## {a.title}", ""] + env + [t.markdown()]
    if loss_lines:
        out += ["", "| mixed precision loss check (same seed, same data) | fp32 vs mixed | |",
                "|---|---|---|"] + loss_lines
    if t.notes:
        out += [""] + [f"- {n}" for n in t.notes]
    write(out, a.markdown)
    if a.jsonl:
        with open(a.jsonl, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")


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
        lines.append(f"| {size}² | {threads} | {fmt(ours, 'ms')} | {fmt(ort, 'ms')} | {fmt(torch, 'ms')} | {ratio(ort, ours)} | "
                     f"{ratio(torch, ours)} | {fmt(bf16, 'ms')} | {ratio(ort, bf16)} |")
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
    s = [fmt(v, "s") for v in (o, r, p)]
    lines.append(f"| wall, median of {len(by['faststyle'])} | {' | '.join(s)} | {ratio(r, o)} | {ratio(p, o)} |")
    o, r, p = (med(i, "max_rss_kb") for i in ("faststyle", "onnxruntime", "pytorch"))
    mib = [fmt(None if v is None else v / 1024, "MiB") for v in (o, r, p)]
    lines.append(f"| peak RSS | {' | '.join(mib)} | {ratio(r, o)} | {ratio(p, o)} |")
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


def deploy(a):
    recs = load(a.results)
    out = ["## faststyle vs ONNX Runtime and PyTorch on the CPU", ""] + machine(a.results)
    for part in (forward_table(recs), job_table(a.results), memory_table(a.results, recs)):
        if part:
            out += part + [""]
    out += [f"- {r['text']}" for r in recs if r.get("bench") == "note"]
    write(out, a.markdown)


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def quality(a):
    out, k = a.results, a.k
    rows = jsonl(os.path.join(out, "evaluate.jsonl"))
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

    steps = {r["kind"]: r for r in jsonl(os.path.join(out, "step-time.jsonl")) if "kind" in r}
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="suite", required=True)
    s = sub.add_parser("speed", help="cpu.sh / gpu.sh: faststyle against PyTorch")
    s.add_argument("results")
    s.add_argument("--markdown", help="also write the table here")
    s.add_argument("--jsonl", help="also write every normalised record here")
    s.add_argument("--title", default="faststyle vs PyTorch")
    d = sub.add_parser("deploy", help="deploy.sh: against ONNX Runtime and PyTorch, memory")
    d.add_argument("results")
    d.add_argument("--markdown", help="also write the table here")
    q = sub.add_parser("quality", help="quality_cpu.sh: held-out losses, add-style")
    q.add_argument("results")
    q.add_argument("--k", type=int, required=True, help="iterations of each one-style model")
    a = ap.parse_args()
    {"speed": speed, "deploy": deploy, "quality": quality}[a.suite](a)


if __name__ == "__main__":
    main()

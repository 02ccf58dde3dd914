"""ONNX Runtime running an exported style model (scripts/export_onnx.py): the baseline that
faststyle's CPU path is compared with in scripts/bench/deploy.sh.

usage:
  onnx_runtime.py MODEL.onnx [--sizes 512,1024,2048] [--threads N] [--repeat N] [--warmup K] [--json OUT]
  onnx_runtime.py MODEL.onnx [--threads N] --whole-job IMG OUT

Times one forward pass on a 1x3xSxS input per size and prints the median. --whole-job does
the whole job once, as an application would: create the session, decode IMG, run, round,
encode OUT (time the process from outside, e.g. /usr/bin/time -v).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def whole_job(a):
    from PIL import Image
    s = session(a.model, a.threads)
    x = np.asarray(Image.open(a.whole_job[0]).convert("RGB"), dtype=np.float32)
    y = s.run(None, {"image": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0]
    out = np.rint(y[0].transpose(1, 2, 0)).astype(np.uint8)  # the graph already clamps
    Image.fromarray(out).save(a.whole_job[1])


def bench(a):
    s = session(a.model, a.threads)
    results = []
    for size in [int(v) for v in a.sizes.split(",")]:
        x = (np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32) * 255)
        for _ in range(a.warmup):
            s.run(None, {"image": x})
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            s.run(None, {"image": x})
            times.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(times)
        print(f"onnxruntime size {size}: median {med:.1f} ms (min {min(times):.1f}, n={len(times)})",
              flush=True)
        results.append({"bench": "forward", "impl": "onnxruntime", "device": "cpu",
                        "width": size, "height": size, "precision": "fp32", "median_ms": med,
                        "min_ms": min(times), "times_ms": times,
                        "threads": a.threads or os.cpu_count()})
    if a.json:
        with open(a.json, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model", help="exported model (.onnx)")
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", help="append one JSON line per size here")
    ap.add_argument("--whole-job", nargs=2, metavar=("IMG", "OUT"))
    a = ap.parse_args()
    if a.whole_job:
        whole_job(a)
    else:
        bench(a)


if __name__ == "__main__":
    main()

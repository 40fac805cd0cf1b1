"""Python-side timings (a benchmark, not a test): neurofit.FastL2LiR against fastl2lir 0.11 in
the same process on the same arrays, and the Python API against the `neurofit` CLI on the same
data written as .npy (the CLI's figure includes process start-up and file reading).

    python python/bench/bench_python.py [--repeats 3] [--cli target/release/neurofit]

Prints one line per measurement: medians of `--repeats` runs, interleaved."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import neurofit


def simulate(n, f, u, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)) + 100.0
    W = rng.standard_normal((f, u)) * (rng.random((f, u)) < 0.01)
    Y = (X - 100.0) @ W + rng.standard_normal((n, u))
    return X, Y


def gsn_data(n, c=200, t=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    sig = A @ rng.standard_normal((n, c))
    return sig[:, :, None] + rng.standard_normal((n, c, t))


def timed(fn):
    # let the previous run's threads (OpenBLAS spins after a call) go idle first
    time.sleep(1.0)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cli", default="target/release/neurofit")
    ap.add_argument("--sizes", default="1000x4000x1000x200,1000x15000x1000x500")
    args = ap.parse_args()
    try:
        import fastl2lir
    except ImportError:
        fastl2lir = None
        print("fastl2lir is not installed: reference timings skipped", file=sys.stderr)
    have_cli = os.path.exists(args.cli)
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("TQDM_DISABLE", "1")
    for size in args.sizes.split(","):
        n, f, u, k = map(int, size.split("x"))
        X, Y = simulate(n, f, u)
        np.save(os.path.join(tmp, "X.npy"), X)
        np.save(os.path.join(tmp, "Y.npy"), Y)
        runs = {"neurofit python": [], "fastl2lir 0.11": [], "neurofit cli": []}
        for _ in range(args.repeats):
            runs["neurofit python"].append(
                timed(lambda: neurofit.FastL2LiR(device="cpu").fit(X, Y, alpha=100.0, n_feat=k))
            )
            if fastl2lir is not None:
                runs["fastl2lir 0.11"].append(
                    timed(lambda: fastl2lir.FastL2LiR().fit(X, Y, alpha=100.0, n_feat=k))
                )
            if have_cli:
                cmd = [args.cli, "ridge", "fit", "--quiet", "--device", "cpu", "--x",
                       os.path.join(tmp, "X.npy"), "--y", os.path.join(tmp, "Y.npy"),
                       "--alpha", "100", "--n-feat", str(k), "--out", os.path.join(tmp, "m.npz")]
                runs["neurofit cli"].append(timed(lambda: subprocess.run(cmd, check=True)))
        med = {k2: statistics.median(v) for k2, v in runs.items() if v}
        line = f"fit n={n} F={f} U={u} k={k}: " + ", ".join(
            f"{k2} {v:.2f} s" for k2, v in med.items()
        )
        if "fastl2lir 0.11" in med:
            line += f"; ratio {med['neurofit python'] / med['fastl2lir 0.11']:.3f}x"
        print(line, flush=True)
    for n in (200, 500, 1000):
        d = gsn_data(n)
        np.save(os.path.join(tmp, "d.npy"), d)
        py, cli = [], []
        for _ in range(args.repeats):
            py.append(timed(lambda: neurofit.perform_gsn(d, {"device": "cpu"})))
            if have_cli:
                cmd = [args.cli, "gsn", "--device", "cpu", "--data", os.path.join(tmp, "d.npy"),
                       "--out", os.path.join(tmp, "r.npz")]
                cli.append(timed(lambda: subprocess.run(cmd, check=True, capture_output=True)))
        line = f"perform_gsn N={n} C=200 T=3: neurofit python {statistics.median(py):.3f} s"
        if cli:
            line += f", neurofit cli {statistics.median(cli):.3f} s"
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Times the reference PyFastL2LiR 0.11 on the benchmark shapes (side-by-side with
`cargo bench --bench ridge`). Needs: pip install fastl2lir 'numpy<2.4' threadpoolctl.

Usage: python3 benches/reference/fastl2lir_reference.py [--repeats 3] [--cases fc8,f4000,conv4]
Prints one line per case: name, dtype, median and all times in seconds.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")
import numpy as np  # noqa: E402
import fastl2lir  # noqa: E402


def simulate(n, f, units, seed=1):
    rng = np.random.default_rng(seed)
    sources = 8
    centres = (np.arange(sources) + 0.5) * f / sources
    d = (np.arange(f)[None, :] - centres[:, None]) / (f / sources)
    mix = np.exp(-d * d)
    x = 2.0 * rng.standard_normal((n, sources)) @ mix + rng.standard_normal((n, f))
    x += 100.0 + 10.0 * rng.random((1, f))
    w = np.zeros((f, units))
    for u in range(units):
        w[rng.integers(0, f, 6), u] += rng.standard_normal(6)
    y = (x - x.mean(0)) @ w + rng.standard_normal((n, units))
    return x, y


CASES = {
    "fc8": dict(n=1000, f=15000, shape=(1000,), k=500, chunk=0, dtypes=("float64", "float32")),
    "f4000": dict(n=1000, f=4000, shape=(1000,), k=500, chunk=0, dtypes=("float64", "float32")),
    "conv4": dict(n=1000, f=15000, shape=(5, 28, 28), k=500, chunk=784, dtypes=("float64",)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="fc8,f4000,conv4")
    a = ap.parse_args()
    for name in a.cases.split(","):
        c = CASES[name]
        units = int(np.prod(c["shape"]))
        x, y = simulate(c["n"], c["f"], units)
        y = y.reshape((c["n"],) + c["shape"], order="F")
        for dt in c["dtypes"]:
            dtype = getattr(np, dt)
            xs, ys = x.astype(dtype), y.astype(dtype)
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                fastl2lir.FastL2LiR().fit(xs, ys, alpha=100.0, n_feat=c["k"], chunk_size=c["chunk"], dtype=dtype)
                times.append(time.perf_counter() - t)
            print(f"{name} {dt} median {statistics.median(times):.3f} s  all {['%.3f' % v for v in times]}", flush=True)


if __name__ == "__main__":
    main()

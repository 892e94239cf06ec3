#!/usr/bin/env python3
"""Which OpenBLAS kernels the PyTorch peer runs: the environment's, or the ones OpenBLAS picks itself.

This machine's environment may set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), because older OpenBLAS
builds compute wrong results or crash on some processors; here it says Haswell (AVX2) on an AVX-512
Zen CPU. OpenBLAS reads both once, when the library loads, so they must be decided before torch is
imported. choose() (--openblas-core, used by scripts/bench-torch.py and scripts/bench-torch-peers.py
before they import torch) does that:

- "env": leave both variables as the environment set them.
- "auto" (the default): check the kernels OpenBLAS picks without them, in child processes, and only
  then unset both, together, in this process (and so in the processes it spawns, DDP's ranks). The
  check: a child with the variables kept and a child without them (run_probe) each report the
  kernels OpenBLAS names (openblas_get_corename), compute float32 torch.mm on the shapes of the
  models' Dense layers (forward, grad-input and grad-weight, every transposed layout, batch 32 and
  128) against a float64 reference computed without BLAS, and run one forward and backward of lenet
  and the mlp on the same seeded input. The variables are unset only if the second child exits
  cleanly, its GEMMs are within MAX_RELATIVE_ERROR of float64, and its logits, loss and gradients
  are within MAX_RELATIVE_ERROR of the first child's; otherwise they are kept, and the setup says why.

What was chosen is stated in the scripts' setup as blas.coreChoice (what choose() returns). Only the
benchmark's peer processes change: tests and CI keep the machine's variables.

    python3 scripts/bench-torch-openblas.py            # runs the check and prints the choice as JSON
    python3 scripts/bench-torch-openblas.py --probe OUT [--compare KEPT]   # one child (internal)
    python3 scripts/bench-torch-openblas.py --time-gemms 2   # CPU time of the mlp's GEMMs, this environment's kernels
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MODES = ("auto", "env")
# Normwise (Frobenius) relative error allowed for a float32 GEMM against float64, and between the
# two kernels' forward/backward results.
MAX_RELATIVE_ERROR = 1e-5
PROBE_TIMEOUT_S = 300
# The Dense layers (inputs, outputs) of common/models.ts: mlp, lenet, cnn-dropout/cnn-bn.
DENSE_LAYERS = ((3072, 128), (128, 64), (64, 10), (400, 120), (120, 84), (84, 10), (1024, 64))
BATCHES = (32, 128)
CHECK_MODELS = ("lenet", "mlp")


def load_bench_torch():
    """scripts/bench-torch.py as a module, for its models and memory-format choice."""
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("bench_torch", os.path.join(HERE, "bench-torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def gemm_shapes():
    """(M, K, N) of each Dense layer's forward, grad-input and grad-weight product, per batch."""
    for b in BATCHES:
        for k, n in DENSE_LAYERS:
            yield (b, k, n)  # forward: x @ W^T
            yield (b, n, k)  # grad input: g @ W
            yield (n, b, k)  # grad weight: g^T @ x


def reference_mm(torch, a, b):
    """a @ b in float64 by elementwise products and sums, not through any BLAS."""
    a, b = a.double(), b.double()
    rows = [(a[i:i + 8].unsqueeze(2) * b.unsqueeze(0)).sum(1) for i in range(0, a.shape[0], 8)]
    return torch.cat(rows)


def relative_error(torch, got, want):
    got, want = got.double(), want.double()
    return float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want).clamp_min(1e-300))


def gemm_errors(torch):
    """The largest relative error of float32 torch.mm against float64, over every shape and layout."""
    g = torch.Generator().manual_seed(7)
    worst, count = 0.0, 0
    for m, k, n in gemm_shapes():
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        want = reference_mm(torch, a, b)
        for a_op in (a, a.t().contiguous().t()):  # row-major, and column-major (a transposed view)
            for b_op in (b, b.t().contiguous().t()):
                worst = max(worst, relative_error(torch, torch.mm(a_op, b_op), want))
                count += 1
    return worst, count


def forward_backward(torch, nn, bt, name):
    """Logits, loss and gradients of one seeded forward and backward of `name`, as the bench runs it."""
    torch.manual_seed(0)
    _, fmt = bt.resolve_memory_format(torch, "auto")
    model = bt.build(nn, name)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=g).float().div_(255.0)
    y = torch.randint(0, 10, (32,), generator=g)
    if name != "mlp":
        model, x = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    model.train()
    logits = model(x)
    loss = nn.CrossEntropyLoss()(logits, y)
    loss.backward()
    return [logits.detach(), loss.detach().reshape(1)] + [p.grad.detach() for p in model.parameters()]


def run_probe(out_path, compare_path):
    """One child: kernels, GEMM errors, and forward/backward results (saved to out_path; with
    compare_path, also their largest relative difference from that file's). Prints one JSON line."""
    bt = load_bench_torch()
    import torch
    from torch import nn
    bt.set_threads(torch, 1)
    lib = bt.openblas()
    core = None if lib is None else bt.openblas_core(lib)
    gemm_worst, gemm_count = gemm_errors(torch)
    results = {name: forward_backward(torch, nn, bt, name) for name in CHECK_MODELS}
    torch.save(results, out_path)
    report = {"core": core, "gemmMaxRelError": gemm_worst, "gemmProducts": gemm_count}
    if compare_path:
        kept = torch.load(compare_path)
        report["forwardBackwardMaxRelDiff"] = max(
            relative_error(torch, mine, theirs) for name in CHECK_MODELS for mine, theirs in zip(results[name], kept[name], strict=True))
    print(json.dumps(report), flush=True)


def probe(env, out_path, compare_path=None):
    """Runs one child with `env`; its report, or an error string naming how it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", out_path] + (["--compare", compare_path] if compare_path else [])
    try:
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"the check process ran past {PROBE_TIMEOUT_S} s"
    if run.returncode != 0:
        how = f"was killed by signal {-run.returncode}" if run.returncode < 0 else f"exited with {run.returncode}"
        tail = (run.stderr.strip().splitlines() or [""])[-1]
        return f"the check process {how}" + (f" ({tail})" if tail else "")
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"the check process printed no report ({run.stdout[-200:]!r})"


def choose(mode):
    """Before torch loads: keep or unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (see the module's
    docstring); returns the choice, which bench-torch.py's setup_info states as blas.coreChoice."""
    if mode not in MODES:
        raise SystemExit(f"--openblas-core: expected one of {', '.join(MODES)}, but got {mode!r}")
    found = {v: os.environ.get(v) for v in CORE_VARIABLES}
    choice = {"mode": mode, "envFound": found, "envUnset": False, "checkedCore": None, "keptCore": None,
              "gemmMaxRelError": None, "forwardBackwardMaxRelDiff": None, "fallback": None}
    if mode == "auto" and any(v is not None for v in found.values()):
        choice.update(check_unset())
        if choice["fallback"] is None:
            for v in CORE_VARIABLES:
                os.environ.pop(v, None)
            choice["envUnset"] = True
    return choice


def check_unset():
    """Both children (variables kept, then unset) and the verdict: the fields of the choice."""
    unset_env = {k: v for k, v in os.environ.items() if k not in CORE_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="dtrain-openblas-") as d:
        kept_path, unset_path = os.path.join(d, "kept.pt"), os.path.join(d, "unset.pt")
        kept = probe(dict(os.environ), kept_path)
        if isinstance(kept, str):
            return {"fallback": f"with the variables kept, {kept}"}
        unset = probe(unset_env, unset_path, kept_path)
    fields = {"keptCore": kept["core"]}
    if isinstance(unset, str):
        return {**fields, "fallback": f"with the variables unset, {unset}"}
    fields.update(checkedCore=unset["core"], gemmMaxRelError=unset["gemmMaxRelError"], forwardBackwardMaxRelDiff=unset["forwardBackwardMaxRelDiff"])
    if not unset["gemmMaxRelError"] <= MAX_RELATIVE_ERROR:
        return {**fields, "fallback": f"{unset['core']}'s float32 GEMM was {unset['gemmMaxRelError']:.2e} from float64 (allowed {MAX_RELATIVE_ERROR:.0e})"}
    if not unset["forwardBackwardMaxRelDiff"] <= MAX_RELATIVE_ERROR:
        return {**fields, "fallback": f"{unset['core']}'s forward/backward was {unset['forwardBackwardMaxRelDiff']:.2e} from {kept['core']}'s (allowed {MAX_RELATIVE_ERROR:.0e})"}
    return {**fields, "fallback": None}


def time_gemms(seconds):
    """CPU microseconds per set of the mlp's batch-32 training GEMMs (forward, grad input, grad
    weight of its three Dense layers, as torch lays them out), on the kernels this environment
    gives OpenBLAS: the part of a step the kernel choice can change, without the rest's noise."""
    import time
    bt = load_bench_torch()
    import torch
    bt.set_threads(torch, 1)
    lib = bt.openblas()
    g = torch.Generator().manual_seed(1)
    ops = []
    for k, n in DENSE_LAYERS[:3]:
        x, w, grad = torch.randn(32, k, generator=g), torch.randn(n, k, generator=g), torch.randn(32, n, generator=g)
        ops += [(x, w.t()), (grad, w), (grad.t(), x)]
    for a, b in ops:  # warm-up
        torch.mm(a, b)
    sets, c0 = 0, time.process_time()
    while time.process_time() - c0 < seconds:
        for a, b in ops:
            torch.mm(a, b)
        sets += 1
    print(json.dumps({"core": bt.openblas_core(lib), "cpuMicrosecondsPerSet": 1e6 * (time.process_time() - c0) / sets, "sets": sets}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", metavar="OUT", help="run one check child, saving its results to OUT")
    ap.add_argument("--compare", metavar="KEPT", help="with --probe: compare with the results saved in KEPT")
    ap.add_argument("--openblas-core", default="auto", choices=MODES)
    ap.add_argument("--time-gemms", type=float, metavar="SECONDS", help="time the mlp's GEMMs on this environment's kernels")
    args = ap.parse_args()
    if args.time_gemms:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        return time_gemms(args.time_gemms)
    if args.probe:
        return run_probe(args.probe, args.compare)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(json.dumps(choose(args.openblas_core)))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""PyTorch training throughput on the CPU for the four dtrain models, for comparison only.

The same layers as common/models.ts (Keras 'valid' convolutions), Adam(lr=0.001), cross-entropy,
one thread by default. Each step does the work of dtrain's StepComputer.train plus the optimizer:
it slices a batch of uint8 images from an in-memory pool (2,048 images, cycled), converts it to
float (scaled to [0,1]; the mlp's standardized per feature, as common/data/preprocess.ts does), and
runs forward, backward and Adam. scripts/bench-torch-peers.py uses the same steps (make_steps) and
the same setup (prepare_process, set_threads), so the two scripts measure the same thing.

The setup, stated in every output as "setup" (see setup_info):
- every thread pool pinned: OMP/OpenBLAS/MKL_NUM_THREADS before torch loads, then
  torch.set_num_threads and openblas_set_num_threads (Debian's torch calls OpenBLAS as a generic
  BLAS, so torch.set_num_threads alone leaves OpenBLAS on every core);
- glibc malloc told to keep freed memory (mallopt, before torch loads): by default it hands large
  freed blocks back to the kernel, and whether it does so every step depends on the process's
  allocation history; where it does, lenet pays ~800 page faults (~2 ms) per step;
- channels-last activations for the convolutional models on the CPU (--memory-format), which
  oneDNN's convolutions and PyTorch's pooling run faster on, and which is dtrain's own layout;
- OpenBLAS's own choice of kernels (--openblas-core auto, the default): OPENBLAS_CORETYPE and
  OPENBLAS_L2_SIZE unset before torch loads, once child processes have checked the kernels OpenBLAS
  then picks (GEMMs against float64, lenet and mlp forward/backward against the kept kernels'), kept
  where that check fails; --openblas-core env keeps them (scripts/bench-torch-openblas.py).

Prints one JSON object on stdout: {"available": false, "reason": ...} when torch cannot be imported
(it is optional, never required), otherwise {"available": true, "version", "threads", "device",
"setup", "results": [{model, batch, parameters, imagesPerSecond: {median, min, max, runs}}]}.

    python3 scripts/bench-torch.py [--quick] [--models lenet,mlp] [--batch 32,128] [--threads 1]
                                   [--memory-format auto|channels-last|contiguous] [--malloc keep|default]
                                   [--openblas-core auto|env]
    python3 scripts/bench-torch.py --device cuda --batch 32,256,1024   # on a GPU (scripts/gpu-smoke.sh)
    python3 scripts/bench-torch.py --serve [--threads 1]

--serve runs timed steps on request, so that scripts/bench-compute.ts can interleave PyTorch with its
own runs on a shared machine: first a line {"available", "version", "threads", "config", "setup"},
then for each request line {"model", "batch", "steps"} (or {"model", "batch", "seconds"}: steps for
that long) one line {"seconds", "cpuSeconds", "steps"} (the model, data and optimizer of a (model,
batch) pair are made once and kept).
"""
import argparse
import ctypes
import importlib.util
import json
import os
import re
import resource
import statistics
import sys
import time

# "cpu" or "cuda" (--device); on cuda every timed run ends with a synchronize.
DEVICE = "cpu"
# uint8 images each step's batch is sliced from, cycled: new inputs every step, as in training.
POOL_IMAGES = 2048
# glibc's mallopt parameters (malloc.h) and the values prepare_process sets: no block up to 32 MiB
# (the largest activation here, cnn-dropout's first at batch 128, is 14.7 MB) is mmap'ed, and the
# heap is never trimmed, so a step reuses the pages the last one freed.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30  # mallopt takes an int
MEMORY_FORMATS = ("auto", "channels-last", "contiguous")
MALLOC_MODES = ("keep", "default")
OPENBLAS_CORE_MODES = ("auto", "env")
# What prepare_process did, for setup_info.
_PREPARED = {"mallocKeepsFreedMemory": False}


def prepare_process(threads, malloc="keep"):
    """Before torch loads: pins every thread pool's environment variable and (malloc "keep") tells
    malloc to keep freed memory; "default" leaves glibc's behaviour, for comparison. Measured on 2026-11-30 (lenet, batch 32, one thread): without the mallopt, some
    processes took ~800 minor faults and ~2.1-2.4 ms of system time per step and others none."""
    # torch.set_num_threads governs OpenMP and MKL, not a BLAS torch only knows as "generic":
    # Debian's torch calls OpenBLAS through libblas.so.3, and OpenBLAS would use every core for
    # the Dense layers (set_threads also sets it at run time, for the all-cores row).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if malloc == "keep":
        keep_freed_memory()


def keep_freed_memory():
    """True when glibc accepted both mallopt calls (False on a libc without mallopt)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):
        return False
    _PREPARED["mallocKeepsFreedMemory"] = ok
    return ok


def load_openblas_choice():
    """scripts/bench-torch-openblas.py as a module: which OpenBLAS kernels the peer runs."""
    sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the working tree
    spec = importlib.util.spec_from_file_location("bench_torch_openblas", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-torch-openblas.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def choose_openblas_core(mode):
    """Before torch loads (after prepare_process, so the check's children run on the row's threads):
    keeps or unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE; setup_info states the choice."""
    try:
        chooser = load_openblas_choice()
    except FileNotFoundError:  # copied alone (scripts/gpu-smoke.sh does): keep the variables, and say so
        found = {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        _PREPARED["openblasCoreChoice"] = {"mode": mode, "envFound": found, "envUnset": False, "checkedCore": None, "keptCore": None, "gemmMaxRelError": None,
                                           "forwardBackwardMaxRelDiff": None, "fallback": None if mode == "env" else "bench-torch-openblas.py is not beside bench-torch.py"}
        return
    _PREPARED["openblasCoreChoice"] = chooser.choose(mode)


def loaded_libraries(pattern):
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if len(line.split()) >= 6 and re.search(pattern, line.split()[-1], re.I)})


def openblas():
    """The OpenBLAS this process loaded (through libblas.so.3), or None."""
    for path in loaded_libraries(r"libopenblas"):
        try:
            return ctypes.CDLL(path)
        except OSError:
            pass
    return None


def openblas_core(lib):
    """The kernels OpenBLAS picked when it loaded ("Haswell", "Cooperlake"), from its handle."""
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def set_threads(torch, threads):
    """torch's intra-op pool and OpenBLAS's, which torch.set_num_threads does not reach."""
    torch.set_num_threads(threads)
    lib = openblas()
    if lib is not None:
        lib.openblas_set_num_threads(threads)


def blas_info(torch):
    """The BLAS torch was built for, the one it loaded, and OpenBLAS's thread count and kernels."""
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    loaded = loaded_libraries(r"blas|lapack")
    info = {"buildInfo": m.group(1) if m else "unknown", "loaded": loaded, "openblas": any("openblas" in p for p in loaded)}
    lib = openblas()
    if lib is not None:
        info["openblasThreads"] = lib.openblas_get_num_threads()
        info["openblasCore"] = openblas_core(lib)
        info["openblasCoretypeEnv"] = os.environ.get("OPENBLAS_CORETYPE")
        if "openblasCoreChoice" in _PREPARED:
            info["coreChoice"] = _PREPARED["openblasCoreChoice"]
    return info


def conv_backend(torch, memory_format):
    """The backend torch picks for a batch-32 3x32x32 convolution (Mkldnn is oneDNN), or None."""
    try:
        x = torch.zeros(32, 3, 32, 32).to(memory_format=memory_format)
        w = torch.zeros(6, 3, 5, 5).to(memory_format=memory_format)
        return str(torch._C._select_conv_backend(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)).split(".")[-1]
    except (AttributeError, RuntimeError, TypeError):
        return None


def resolve_memory_format(torch, requested):
    """auto: channels-last on the CPU (measured faster here for all three convolutional models),
    contiguous on CUDA (not measured there)."""
    fmt = ("channels-last" if DEVICE == "cpu" else "contiguous") if requested == "auto" else requested
    return fmt, torch.channels_last if fmt == "channels-last" else torch.contiguous_format


def setup_info(torch, memory_format):
    """What a PyTorch number was measured with; every output carries it."""
    cap = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    return {
        "torch": torch.__version__,
        "device": DEVICE,
        "threads": torch.get_num_threads(),
        "interopThreads": torch.get_num_interop_threads(),
        "threadEnv": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "blas": blas_info(torch),
        "mkldnn": {"available": torch.backends.mkldnn.is_available(), "enabled": torch.backends.mkldnn.enabled,
                   "convBackend": conv_backend(torch, resolve_memory_format(torch, memory_format)[1])},
        "cpuCapability": cap.group(1) if cap else None,
        "memoryFormat": resolve_memory_format(torch, memory_format)[0],
        "mallocKeepsFreedMemory": _PREPARED["mallocKeepsFreedMemory"],
        "optimizer": "Adam(lr=0.001), torch defaults",
        "data": f"uint8 pool of {POOL_IMAGES} images, converted every step",
    }


def build(nn, name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(3072, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )
    if name in ("cnn-dropout", "cnn-bn"):
        bn = name == "cnn-bn"
        norm2 = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        layers = [nn.Conv2d(3, 32, 3), nn.ReLU(), *norm2(32), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3), nn.ReLU(), *norm2(64), nn.MaxPool2d(2),
                  nn.Conv2d(64, 64, 3), nn.ReLU(), *norm2(64), nn.Flatten()]
        if not bn:
            layers.append(nn.Dropout(0.3))
        layers += [nn.Linear(1024, 64), nn.ReLU()]
        if bn:
            layers.append(nn.BatchNorm1d(64))
        layers.append(nn.Linear(64, 10))
        return nn.Sequential(*layers)
    raise SystemExit(f"unknown model {name!r}: expected mlp, lenet, cnn-dropout or cnn-bn")


def image_pool(torch, seed, count=POOL_IMAGES):
    """Random uint8 images and labels, standing in for a dataset in memory (as dtrain's workers hold it)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (count,), generator=g)
    return images, labels


def make_steps(torch, nn, name, batch, images, labels, memory_format="auto", wrap=lambda model: model):
    """A function running n training steps of `name` at `batch` (Adam included), and the model.

    Each step: the next `batch` uint8 images of the pool to float (scaled, or standardized per
    feature for the mlp), forward, cross-entropy, backward, Adam. Convolutional models on the
    channels-last format get their weights and inputs in it. `wrap` wraps the built model
    (DistributedDataParallel for the DDP peer)."""
    torch.manual_seed(0)
    _, fmt = resolve_memory_format(torch, memory_format)
    convolutional = name != "mlp"
    model = build(nn, name).to(DEVICE)
    if convolutional:
        model = model.to(memory_format=fmt)
    model = wrap(model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    images, labels = images.to(DEVICE), labels.to(DEVICE)
    if not convolutional:  # per-feature mean and 1/std of the pool, as fitStandardization computes them
        pool = images.double()
        mean, inv_std = pool.mean(0).float(), (1.0 / pool.std(0, unbiased=False).clamp_min(1e-12)).float()
    count = images.shape[0]
    pos = [0]

    def steps(n):
        for _ in range(n):
            if pos[0] + batch > count:
                pos[0] = 0
            x = images[pos[0]:pos[0] + batch].float()
            x = x.div_(255.0).contiguous(memory_format=fmt) if convolutional else x.sub_(mean).mul_(inv_std)
            y = labels[pos[0]:pos[0] + batch]
            pos[0] += batch
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    return steps, model


def stepper(torch, nn, name, batch, memory_format="auto"):
    """make_steps over a pool of at least POOL_IMAGES images (more at batches above it)."""
    images, labels = image_pool(torch, 1, max(POOL_IMAGES, batch))
    return make_steps(torch, nn, name, batch, images, labels, memory_format)


def serve(torch, nn, memory_format):
    print(json.dumps({"available": True, "version": torch.__version__, "threads": torch.get_num_threads(), "config": torch.__config__.show(),
                      "setup": setup_info(torch, memory_format)}), flush=True)
    made = {}
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["model"], int(req["batch"]))
        if key not in made:
            made[key] = stepper(torch, nn, *key, memory_format)[0]
        t0, c0 = time.perf_counter(), time.process_time()
        if "seconds" in req:
            # For as long as asked, one step at a time (scripts/bench-compute-pair.ts): two processes asked at once stop together.
            until, steps = t0 + float(req["seconds"]), 0
            while time.perf_counter() < until:
                made[key](1)
                steps += 1
        else:
            steps = int(req["steps"])
            made[key](steps)
        print(json.dumps({"seconds": time.perf_counter() - t0, "cpuSeconds": time.process_time() - c0, "steps": steps}), flush=True)


def measure(torch, nn, name, batch, quick, memory_format):
    steps, model = stepper(torch, nn, name, batch, memory_format)

    run_seconds, run_count, warmup = (0.3, 3, 3) if quick else (1.0, 5, 5)
    steps(warmup)
    t0 = time.perf_counter()
    steps(1)
    per_step = time.perf_counter() - t0
    steps_per_run = max(1, round(run_seconds / per_step))
    runs, cpu, faults = [], 0.0, 0
    for _ in range(run_count):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        steps(steps_per_run)
        elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        runs.append(steps_per_run * batch / elapsed)
        cpu += r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        faults += r1.ru_minflt - r0.ru_minflt
    return {
        "model": name,
        "batch": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "imagesPerSecond": {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs},
        # Process CPU time (all threads) and minor page faults per timed step: a 1-thread peer's CPU
        # time is its wall time, and a warmed-up step should fault no pages in.
        "cpuMsPerStep": 1e3 * cpu / (run_count * steps_per_run),
        "minorFaultsPerStep": faults / (run_count * steps_per_run),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="mlp,lenet,cnn-dropout,cnn-bn")
    ap.add_argument("--batch", default="32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS)
    ap.add_argument("--malloc", default="keep", choices=MALLOC_MODES, help="keep: mallopt keeps freed memory (default); default: glibc as is")
    ap.add_argument("--openblas-core", default="auto", choices=OPENBLAS_CORE_MODES,
                    help="auto: unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE once checked, else keep them (default); env: keep them")
    args = ap.parse_args()
    prepare_process(args.threads, args.malloc)
    choose_openblas_core(args.openblas_core)
    try:
        import torch
        from torch import nn
    except Exception as e:  # ImportError, or a broken install
        print(json.dumps({"available": False, "reason": f"python3 cannot import torch ({type(e).__name__}: {e})"}))
        return
    set_threads(torch, args.threads)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"available": False, "reason": f"torch {torch.__version__} sees no CUDA device"}))
        return
    if args.serve:
        return serve(torch, nn, args.memory_format)
    results = [measure(torch, nn, m.strip(), int(b), args.quick, args.memory_format) for b in args.batch.split(",") for m in args.models.split(",")]
    device = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    print(json.dumps({"available": True, "version": torch.__version__, "threads": torch.get_num_threads(), "device": device,
                      "setup": setup_info(torch, args.memory_format), "results": results}))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""PyTorch training throughput on the CPU for the four dtrain models, for comparison only.

The same layers as common/models.ts (Keras 'valid' convolutions), Adam(lr=0.001), cross-entropy,
float inputs already made, one thread (torch.set_num_threads). Prints one JSON object on stdout:
{"available": false, "reason": ...} when torch cannot be imported (it is optional, never required),
otherwise {"available": true, "version", "threads", "results": [{model, batch, parameters,
imagesPerSecond: {median, min, max, runs}}]}.

    python3 scripts/bench-torch.py [--quick] [--models lenet,mlp] [--batch 32,128] [--threads 1]
    python3 scripts/bench-torch.py --device cuda --batch 32,256,1024   # on a GPU (scripts/gpu-smoke.sh)
    python3 scripts/bench-torch.py --serve [--threads 1]

--serve runs timed steps on request, so that scripts/bench-compute.ts can interleave PyTorch with its
own runs on a shared machine: first a line {"available", "version", "threads", "config"}, then for
each request line {"model", "batch", "steps"} one line {"seconds", "cpuSeconds"} (the model, data and optimizer of
a (model, batch) pair are made once and kept).
"""
import argparse
import json
import os
import statistics
import sys
import time

# "cpu" or "cuda" (--device); on cuda every timed run ends with a synchronize.
DEVICE = "cpu"


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


def stepper(torch, nn, name, batch):
    """A function running n training steps of `name` at `batch` (Adam included), and the model."""
    torch.manual_seed(0)
    model = build(nn, name).to(DEVICE)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 3, 32, 32, device=DEVICE)
    y = torch.randint(0, 10, (batch,), device=DEVICE)

    def steps(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    return steps, model


def serve(torch, nn):
    print(json.dumps({"available": True, "version": torch.__version__, "threads": torch.get_num_threads(), "config": torch.__config__.show()}), flush=True)
    made = {}
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["model"], int(req["batch"]))
        if key not in made:
            made[key] = stepper(torch, nn, *key)[0]
        t0, c0 = time.perf_counter(), time.process_time()
        made[key](int(req["steps"]))
        print(json.dumps({"seconds": time.perf_counter() - t0, "cpuSeconds": time.process_time() - c0}), flush=True)


def measure(torch, nn, name, batch, quick):
    steps, model = stepper(torch, nn, name, batch)

    run_seconds, run_count, warmup = (0.3, 3, 1) if quick else (1.0, 5, 2)
    steps(warmup)
    t0 = time.perf_counter()
    steps(1)
    per_step = time.perf_counter() - t0
    steps_per_run = max(1, round(run_seconds / per_step))
    runs = []
    for _ in range(run_count):
        t0 = time.perf_counter()
        steps(steps_per_run)
        runs.append(steps_per_run * batch / (time.perf_counter() - t0))
    return {
        "model": name,
        "batch": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "imagesPerSecond": {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="mlp,lenet,cnn-dropout,cnn-bn")
    ap.add_argument("--batch", default="32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    # torch.set_num_threads governs OpenMP and MKL, not a BLAS torch only knows as "generic":
    # Debian's torch calls OpenBLAS through libblas.so.3, and OpenBLAS would use every core for
    # the Dense layers. Pin every pool before torch loads its libraries.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    try:
        import torch
        from torch import nn
    except Exception as e:  # ImportError, or a broken install
        print(json.dumps({"available": False, "reason": f"python3 cannot import torch ({type(e).__name__}: {e})"}))
        return
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"available": False, "reason": f"torch {torch.__version__} sees no CUDA device"}))
        return
    if args.serve:
        return serve(torch, nn)
    results = [measure(torch, nn, m.strip(), int(b), args.quick) for b in args.batch.split(",") for m in args.models.split(",")]
    device = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    print(json.dumps({"available": True, "version": torch.__version__, "threads": torch.get_num_threads(), "device": device, "results": results}))


if __name__ == "__main__":
    sys.exit(main())

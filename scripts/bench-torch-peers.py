#!/usr/bin/env python3
"""PyTorch as the peer of `dtrain train` on this machine: one process (1 thread, and every core), and DDP over
2 processes x 1 thread (gloo on 127.0.0.1), both at global batch 32, on the four dtrain models
(scripts/bench-torch.py builds them). Each step includes the data: a slice of in-memory uint8 images
converted to float, as dtrain's workers do. Also says which BLAS torch was built for and which one
it actually loaded (Debian's python3-torch calls whatever libblas.so.3 the alternatives system
points at: the reference BLAS unless an optimized one such as libopenblas0-pthread is installed).

Prints one JSON object: {"available": false, "reason"} when torch cannot be imported, otherwise
{"available": true, "version", "blas": {"buildInfo", "loaded": [...], "openblas": bool},
 "rows": [{"model", "mode": "single"|"ddp", "processes", "threadsPerProcess", "globalBatch",
           "steps", "seconds", "imagesPerSecond"}]}.

    python3 scripts/bench-torch-peers.py [--models mlp,lenet] [--seconds 8] [--modes single,ddp]
"""
import argparse
import importlib.util
import json
import os
import re
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GLOBAL_BATCH = 32
IMAGES = 2048


def load_builder():
    spec = importlib.util.spec_from_file_location("bench_torch", os.path.join(HERE, "bench-torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build


def blas_info(torch):
    show = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", show)
    with open("/proc/self/maps") as f:
        loaded = sorted({line.split()[-1] for line in f if re.search(r"blas|lapack", line.split()[-1] if line.split() else "", re.I)})
    return {"buildInfo": m.group(1) if m else "unknown", "loaded": loaded, "openblas": any("openblas" in p for p in loaded)}


def data(torch, batch_seed):
    g = torch.Generator().manual_seed(batch_seed)
    images = torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (IMAGES,), generator=g)
    return images, labels


def train_steps(torch, nn, model, opt, images, labels, batch, start, n):
    loss_fn = nn.CrossEntropyLoss()
    pos = start
    for _ in range(n):
        if pos + batch > IMAGES:
            pos = 0
        x = images[pos:pos + batch].float().div_(255.0)
        y = labels[pos:pos + batch]
        pos += batch
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return pos


def timed(torch, nn, model, opt, images, labels, batch, seconds, barrier=lambda: None, agreed=lambda done: done):
    """Steps after a warm-up until `seconds` have passed (as `agreed` among DDP ranks); (steps, seconds)."""
    pos = train_steps(torch, nn, model, opt, images, labels, batch, 0, 5)
    barrier()
    t0 = time.perf_counter()
    steps = 0
    # Whole chunks of 10 steps, so that every DDP rank runs the same number of steps.
    while True:
        pos = train_steps(torch, nn, model, opt, images, labels, batch, pos, 10)
        steps += 10
        if agreed(time.perf_counter() - t0 >= seconds):
            break
    return steps, time.perf_counter() - t0


def single(torch, nn, build, name, seconds, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(nn, name)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    images, labels = data(torch, 1)
    steps, secs = timed(torch, nn, model, opt, images, labels, GLOBAL_BATCH, seconds)
    return {"model": name, "mode": "single", "processes": 1, "threadsPerProcess": threads, "globalBatch": GLOBAL_BATCH,
            "steps": steps, "seconds": secs, "imagesPerSecond": steps * GLOBAL_BATCH / secs}


def ddp_rank(rank, world, port, name, seconds, out_path):
    import torch
    import torch.distributed as dist
    from torch import nn
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    build = load_builder()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(build(nn, name))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    images, labels = data(torch, 1 + rank)

    def agreed(done):
        flag = torch.tensor([1 if done else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # stop when any rank's clock says so
        return bool(flag.item())

    steps, secs = timed(torch, nn, model, opt, images, labels, GLOBAL_BATCH // world, seconds, dist.barrier, agreed)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"steps": steps, "seconds": secs}, f)
    dist.destroy_process_group()


def ddp(torch, name, seconds, world=2):
    import tempfile
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rank0.json")
        mp.spawn(ddp_rank, args=(world, port, name, seconds, out), nprocs=world, join=True)
        with open(out) as f:
            r = json.load(f)
    return {"model": name, "mode": "ddp", "processes": world, "threadsPerProcess": 1, "globalBatch": GLOBAL_BATCH,
            "steps": r["steps"], "seconds": r["seconds"], "imagesPerSecond": r["steps"] * GLOBAL_BATCH / r["seconds"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,lenet,cnn-dropout,cnn-bn")
    ap.add_argument("--modes", default="single,ddp")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts of the single process (default: 1 and every core)")
    args = ap.parse_args()
    try:
        import torch
        from torch import nn
    except Exception as e:  # ImportError, or a broken install
        print(json.dumps({"available": False, "reason": f"python3 cannot import torch ({type(e).__name__}: {e})"}))
        return
    build = load_builder()
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode == "single":
                for threads in sorted({int(t) for t in args.threads.split(",")}):
                    rows.append(single(torch, nn, build, name, args.seconds, threads))
                    print(f"{name} single, {threads} thread(s): {rows[-1]['imagesPerSecond']:.0f} img/s", file=sys.stderr)
                continue
            elif mode == "ddp":
                rows.append(ddp(torch, name, args.seconds))
            else:
                raise SystemExit(f"unknown mode {mode!r}: expected single or ddp")
            print(f"{name} {mode}: {rows[-1]['imagesPerSecond']:.0f} img/s", file=sys.stderr)
    print(json.dumps({"available": True, "version": torch.__version__, "blas": blas_info(torch), "rows": rows}))


if __name__ == "__main__":
    sys.exit(main())

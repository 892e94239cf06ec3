#!/usr/bin/env python3
"""PyTorch as the peer of `dtrain train` on this machine: one process (1 thread, and every core), and DDP over
2 processes x 1 thread (gloo on 127.0.0.1), both at global batch 32, on the four dtrain models
(scripts/bench-torch.py builds them). The steps and the process setup are bench-torch.py's
(make_steps, prepare_process, set_threads): each step slices in-memory uint8 images and converts
them to float, as dtrain's workers do; every thread pool, OpenBLAS's included, is pinned to the
row's thread count; malloc keeps freed memory. Also says which BLAS torch was built for and which
one it actually loaded (Debian's python3-torch calls whatever libblas.so.3 the alternatives system
points at: the reference BLAS unless an optimized one such as libopenblas0-pthread is installed).

Prints one JSON object: {"available": false, "reason"} when torch cannot be imported, otherwise
{"available": true, "version", "blas": {"buildInfo", "loaded": [...], "openblas": bool, ...},
 "setup": {...bench-torch.py's setup_info},
 "rows": [{"model", "mode": "single"|"ddp", "processes", "threadsPerProcess", "globalBatch",
           "steps", "seconds", "imagesPerSecond", "cpuSeconds", "minorFaultsPerStep"}]}.
cpuSeconds is the process's CPU time over the timed steps (rank 0's for DDP): about `seconds` times
threadsPerProcess when the pools hold the row's thread count.

    python3 scripts/bench-torch-peers.py [--models mlp,lenet] [--seconds 8] [--modes single,ddp]
                                         [--threads 1,2] [--memory-format auto|channels-last|contiguous]
                                         [--malloc keep|default] [--openblas-core auto|env]

--openblas-core auto (the default) unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before torch loads,
once bench-torch-openblas.py has checked the kernels OpenBLAS then picks, and keeps them where the
check fails; the DDP ranks inherit the choice. setup.blas.coreChoice states it.
"""
import argparse
import importlib.util
import json
import os
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GLOBAL_BATCH = 32


def load_bench_torch():
    """scripts/bench-torch.py as a module: the models, the steps and the process setup."""
    sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the working tree
    spec = importlib.util.spec_from_file_location("bench_torch", os.path.join(HERE, "bench-torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(steps, seconds, barrier=lambda: None, agreed=lambda done: done):
    """Steps after a warm-up until `seconds` have passed (as `agreed` among DDP ranks);
    (steps, seconds, CPU seconds of this process, minor page faults)."""
    steps(5)
    barrier()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    done = 0
    # Whole chunks of 10 steps, so that every DDP rank runs the same number of steps.
    while True:
        steps(10)
        done += 10
        if agreed(time.perf_counter() - t0 >= seconds):
            break
    elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return done, elapsed, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt


def row(name, mode, processes, threads, steps, secs, cpu, faults):
    return {"model": name, "mode": mode, "processes": processes, "threadsPerProcess": threads, "globalBatch": GLOBAL_BATCH,
            "steps": steps, "seconds": secs, "imagesPerSecond": steps * GLOBAL_BATCH / secs, "cpuSeconds": cpu, "minorFaultsPerStep": faults / steps}


def single(torch, nn, bt, name, seconds, threads, memory_format):
    bt.set_threads(torch, threads)
    steps, _ = bt.stepper(torch, nn, name, GLOBAL_BATCH, memory_format)
    return row(name, "single", 1, threads, *timed(steps, seconds))


def ddp_rank(rank, world, port, name, seconds, memory_format, malloc, out_path):
    import torch
    import torch.distributed as dist
    from torch import nn
    bt = load_bench_torch()
    # The parent pinned the pools' environment before spawning; OpenBLAS and malloc once more here.
    if malloc == "keep":
        bt.keep_freed_memory()
    bt.set_threads(torch, 1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    images, labels = bt.image_pool(torch, 1 + rank)
    steps, model = bt.make_steps(torch, nn, name, GLOBAL_BATCH // world, images, labels, memory_format,
                                 wrap=torch.nn.parallel.DistributedDataParallel)

    def agreed(done):
        flag = torch.tensor([1 if done else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # stop when any rank's clock says so
        return bool(flag.item())

    result = timed(steps, seconds, dist.barrier, agreed)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"result": result, "setup": bt.setup_info(torch, memory_format)}, f)
    dist.destroy_process_group()
    # No interpreter teardown: there torch 1.13 can deadlock freeing DDP's Reducer (it joins gloo's
    # thread while holding the GIL, and that thread waits for the GIL to free a tensor). Seen on
    # 2026-11-30 (gdb: ~Reducer -> ~ProcessGroupGloo -> thread::join) in 2 of 6 runs with DDP, both
    # with OpenBLAS's Cooperlake kernels; docs/torch-peer.md has the runs after this exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ddp(name, seconds, memory_format, malloc, world=2):
    import tempfile
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rank0.json")
        mp.spawn(ddp_rank, args=(world, port, name, seconds, memory_format, malloc, out), nprocs=world, join=True)
        with open(out) as f:
            r = json.load(f)
    return {**row(name, "ddp", world, 1, *r["result"]), "setup": r["setup"]}


def main():
    bt = load_bench_torch()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,lenet,cnn-dropout,cnn-bn")
    ap.add_argument("--modes", default="single,ddp")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts of the single process (default: 1 and every core)")
    ap.add_argument("--memory-format", default="auto", choices=bt.MEMORY_FORMATS)
    ap.add_argument("--malloc", default="keep", choices=bt.MALLOC_MODES, help="keep: mallopt keeps freed memory (default); default: glibc as is")
    ap.add_argument("--openblas-core", default="auto", choices=bt.OPENBLAS_CORE_MODES,
                    help="auto: unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE once checked, else keep them (default); env: keep them")
    args = ap.parse_args()
    # Before torch loads (DDP's spawned ranks inherit the environment); set_threads raises the
    # pools at run time for the all-cores row.
    bt.prepare_process(1, args.malloc)
    bt.choose_openblas_core(args.openblas_core)
    try:
        import torch
        from torch import nn
    except Exception as e:  # ImportError, or a broken install
        print(json.dumps({"available": False, "reason": f"python3 cannot import torch ({type(e).__name__}: {e})"}))
        return
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode == "single":
                for threads in sorted({int(t) for t in args.threads.split(",")}):
                    rows.append(single(torch, nn, bt, name, args.seconds, threads, args.memory_format))
                    print(f"{name} single, {threads} thread(s): {rows[-1]['imagesPerSecond']:.0f} img/s", file=sys.stderr)
                continue
            elif mode == "ddp":
                rows.append(ddp(name, args.seconds, args.memory_format, args.malloc))
            else:
                raise SystemExit(f"unknown mode {mode!r}: expected single or ddp")
            print(f"{name} {mode}: {rows[-1]['imagesPerSecond']:.0f} img/s", file=sys.stderr)
    bt.set_threads(torch, 1)
    setup = bt.setup_info(torch, args.memory_format)
    print(json.dumps({"available": True, "version": torch.__version__, "blas": setup["blas"], "setup": setup, "rows": rows}))


if __name__ == "__main__":
    sys.exit(main())

"""Run a function in several processes: GPUs through ``detectron2.engine.launch`` (NCCL), or
CPU processes through the same pattern on the gloo backend.

Detectron2 0.6's ``launch`` asserts that CUDA is available, so CPU-only machines (and the
tests) need :func:`launch_cpu`, which mirrors it: ``torch.multiprocessing.spawn``, one
process group over all machines, a local group per machine for ``comm.get_local_rank``.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

logger = logging.getLogger(__name__)

#: Ranks wait for each other at the end (the final merge); a survey shard can take long, so the
#: timeout is far beyond Detectron2's 30 minutes.
DEFAULT_TIMEOUT = timedelta(hours=12)


def launch_cpu(main_func, num_processes: int, num_machines: int = 1, machine_rank: int = 0,
               dist_url: str = "auto", args=(), timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """``main_func(*args)`` in ``num_processes`` CPU processes per machine (gloo backend)."""
    world_size = num_processes * num_machines
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "", "auto"):
        if num_machines != 1:
            raise ValueError("dist_url 'auto' works on one machine only; give tcp://host:port")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(_cpu_worker, nprocs=num_processes, daemon=False,
             args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout))


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url,
                args, timeout):
    global_rank = machine_rank * num_per_machine + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size,
                            rank=global_rank, timeout=timeout)
    num_machines = world_size // num_per_machine
    for i in range(num_machines):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
        # No rank may tear its groups down while another still talks to it.
        comm.synchronize()
    finally:
        _tear_down_process_groups()


def _tear_down_process_groups() -> None:
    """Destroy every process group while the interpreter is fully alive.

    ``comm._LOCAL_PROCESS_GROUP`` keeps a Python reference to the per-machine group; left
    alone, that group's C++ worker threads are only destroyed during interpreter shutdown,
    where gloo can die with ``terminate called without an active exception`` (SIGABRT). Drop
    the reference first, then destroy all groups.
    """
    comm._LOCAL_PROCESS_GROUP = None
    cached_gloo_group = getattr(comm, "_get_global_gloo_group", None)
    if hasattr(cached_gloo_group, "cache_clear"):  # an lru_cache in detectron2 0.6
        cached_gloo_group.cache_clear()
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_inference(main_func, args=(), num_gpus: int = 0, num_workers: int = 1,
                     num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto"
                     ) -> None:
    """GPUs if ``num_gpus`` > 0 (Detectron2's ``launch``), else ``num_workers`` CPU processes
    per machine, else this process."""
    if num_gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"--num-gpus {num_gpus} but CUDA is not available; use "
                               "--num-workers N for CPU processes")
        d2_launch(main_func, num_gpus, num_machines=num_machines, machine_rank=machine_rank,
                  dist_url=dist_url, args=args, timeout=DEFAULT_TIMEOUT)
    else:
        launch_cpu(main_func, max(1, num_workers), num_machines=num_machines,
                   machine_rank=machine_rank, dist_url=dist_url, args=args)


def set_cpu_threads(threads: int) -> int:
    """Torch threads of this process: ``threads`` if > 0, else the cores divided among the
    processes on this machine (one full-size thread pool each would oversubscribe them).
    CPU kernels sum in thread-dependent order, so catalogues from runs with different
    thread counts per process agree only to float32 rounding."""
    if threads <= 0:
        if comm.get_local_size() <= 1:
            return torch.get_num_threads()
        threads = max(1, (os.cpu_count() or 1) // comm.get_local_size())
    torch.set_num_threads(int(threads))
    return int(threads)


def setup_inference_logging(verbose: bool = False) -> None:
    """Console logging of ``clump_d2`` and ``detectron2`` in this process (rank-aware)."""
    for name in ("clump_d2", "detectron2"):
        setup_logger(name=name, distributed_rank=comm.get_rank(), abbrev_name=name[:2])
        # Detectron2's set-up logs DEBUG; tracebacks of single unreadable images are DEBUG,
        # one line each is WARNING, so a survey's broken files do not flood the console.
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Each shard's loader logs its serialisation; not news.
    logging.getLogger("detectron2.data.common").setLevel(logging.WARNING)

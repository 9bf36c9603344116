"""reglab optimizers under torch.distributed: DistributedDataParallel averages the gradients
of two processes (gloo, on CPU) into ``.grad``, and the optimizer steps as in one process
training on the whole batch, in the readable mode and in the fast mode (whose gradients are
views of one flat buffer, which DDP must write into, not replace unseen).

The two processes are forked from a fresh interpreter running this file: forked from the
test process, whose OpenMP threads have already run, they can hang."""

import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import reglab.optim as ro

WORLD = 2


def _batches():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)) for _ in range(6)
    ]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()


def _optimizer(model, fused):
    opt = ro.AdamW(model.parameters(), lr=0.01, weight_decay=0.1, fused=fused)
    opt.compile = False  # the flat buffers without torch.compile (test_flat.py compares the two)
    return opt


def _train(model, opt, rank=0, world=1):
    for x, y in _batches():
        opt.zero_grad()
        F.cross_entropy(model(x.chunk(world)[rank]), y.chunk(world)[rank]).backward()
        opt.step()


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        for fused in (False, True):
            model = torch.nn.parallel.DistributedDataParallel(_model())
            _train(model, _optimizer(model, fused), rank, WORLD)
            if rank == 0:
                torch.save([p.detach() for p in model.module.parameters()], f"{out}-{int(fused)}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo")
@pytest.mark.slow
def test_ddp_on_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    out = str(tmp_path / "params")
    run = subprocess.run([sys.executable, __file__, out], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for fused in (False, True):
        model = _model()
        _train(model, _optimizer(model, fused))
        for p, q in zip(torch.load(f"{out}-{int(fused)}.pt", weights_only=True), model.parameters()):
            torch.testing.assert_close(p, q.detach(), rtol=1e-12, atol=1e-14)


if __name__ == "__main__":  # a fresh interpreter: no OpenMP thread has run yet, so forking is safe
    mp.start_processes(_worker, args=(_free_port(), sys.argv[1]), nprocs=WORLD, start_method="fork")

"""Worker of the 2-process test (imported by name in the spawned processes, so it lives in
its own module rather than in the test file)."""
import pickle

import torch


class FakeLossModel(torch.nn.Module):
    """Returns losses that depend on the input and on random sampling (like the RPN and
    ROI-head minibatches), with a BatchNorm layer that must stay untouched."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(1)
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, batch):
        assert self.training and not self.bn.training
        x = torch.stack([b["x"] for b in batch])
        out = self.bn(x.reshape(-1, 1)).reshape(-1)
        return {"loss_cls": (self.w * out).mean() + 0.1 * torch.rand(()),
                "loss_box_reg": (x ** 2).mean()}


def fake_batches(n_images, rank=0, world_size=1):
    """One image per batch, images split across processes as by InferenceSampler."""
    return [[{"image_id": i, "x": torch.tensor([float(i) / 3])}]
            for i in range(n_images) if i % world_size == rank]


def instances_of(p):
    from detectron2.structures import Boxes, Instances

    return Instances((100, 100), pred_boxes=Boxes(torch.tensor(p["boxes"]).float().reshape(-1, 4)),
                     scores=torch.tensor(p["scores"]).float(),
                     pred_classes=torch.tensor(p["classes"]).long())


def run_case(case, rank, world_size, output_dir=None):
    """Evaluate the case's predictions shared out over the processes; returns
    (evaluator results, validation losses)."""
    import clump_d2  # noqa: F401
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from clump_d2.engine.hooks import validation_losses
    from clump_d2.evaluation import ClumpEvaluator
    from clump_d2.evaluation.clump_evaluation import IgnoreRule

    name = case["name"]
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: case["dicts"])
        MetadataCatalog.get(name).set(thing_classes=["clump", "odd_clump"])
    ev = ClumpEvaluator(name, score_thresh=0.4, output_dir=output_dir, distributed=True,
                        plot=False,
                        bin_edges={"flux_frac": [0.0, 0.1, 0.2, 0.3]},
                        ignore_rule=IgnoreRule(case.get("ignore_below", {})))
    ev.reset()
    for p in case["preds"][rank::world_size]:
        ev.process([{"image_id": p["image_id"]}], [{"instances": instances_of(p)}])
    results = ev.evaluate()
    losses = validation_losses(FakeLossModel(), fake_batches(case["n_loss_images"], rank,
                                                             world_size), seed=7)
    return results, losses


def worker(case_file, out_prefix, output_dir):
    """Body of each process under ``clump_d2.inference.launch.launch_cpu`` (gloo)."""
    from detectron2.utils import comm

    rank = comm.get_rank()
    with open(case_file, "rb") as f:
        case = pickle.load(f)
    result = run_case(case, rank, comm.get_world_size(), output_dir if rank == 0 else None)
    with open(f"{out_prefix}{rank}.pkl", "wb") as f:
        pickle.dump(result, f)

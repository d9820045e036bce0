"""Speed, memory and FLOPs of a clump detector, and of the paper's pipeline beside it.

The paper's pipeline (Popp et al. 2024) is torchvision's ``fasterrcnn_resnet50_fpn``, its
200x200 crops upsampled to 800 px (``min_size=800``), 3 classes, ImageNet-sized anchors.
Both models see the same synthetic 200x200 galaxies in the same process, measured
alternately (ours, paper, ours, ...) so that a change in machine load hits both alike.
Weights are random: speed does not depend on them, and nothing is downloaded.

Conventions:
* inference: galaxies/s over all images in batches of ``batch_size`` after one warm-up
  batch, median over ``runs``; ``torch.inference_mode``.
* training: images/s of forward + backward + SGD step at ``train_batch`` images per step,
  median over the timed steps after one warm-up step.
* FLOPs: fvcore's counter (1 multiply-add = 1 flop) for one 200x200 image at inference.
* peak memory: on CUDA, ``torch.cuda.max_memory_allocated``; on the CPU, the rise of the
  resident set during one batch in a fresh process that has built the same model (sampled
  every millisecond), so the allocator's cache from earlier batches does not hide it.
* machine peak: FLOP/s of a large float32 matrix multiply (2 n^3 flops) measured in the
  same run; the fraction reached is (2 x fvcore flops per image x galaxies/s) / that peak.
"""
from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import os
import platform
import queue as queue_module
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torchvision
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.analysis import FlopCountAnalysis as D2FlopCountAnalysis
from detectron2.utils.events import EventStorage
from fvcore.nn import FlopCountAnalysis
from tqdm import tqdm

from clump_d2.data.transforms import build_clump_augmentations
from clump_d2.engine import build_config
from clump_d2.modeling.checkpoint import ClumpCheckpointer
from clump_d2.modeling.runtime import apply_channels_last, inference_autocast
from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, make_split, render_galaxy
from clump_d2.structures import clump_box_xywh_in_frame

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkOptions:
    num_images: int = 32  # distinct synthetic galaxies per inference run
    batch_size: int = 8  # inference batch size (both pipelines)
    runs: int = 5  # timed inference runs (median reported)
    train_iters: int = 6  # timed training steps (after one warm-up step)
    train_batch: int = 4  # images per training step (both pipelines)
    image_size: int = 200  # galaxy cutout size (the paper's 200x200 crops)
    paper_min_size: int = 800  # the paper's resize of the 200 px crops
    gemm_size: int = 2048  # matrix size of the peak-FLOP/s measurement
    seed: int = 0


def make_galaxies(options: BenchmarkOptions) -> List[Dict]:
    """Synthetic galaxies (the embedded generator) with their clump boxes (XYXY)."""
    params = SyntheticParams(image_size=options.image_size)
    galaxies = []
    for k in range(options.num_images):
        g = render_galaxy(galaxy_rng(options.seed, "test", k), params)
        boxes, classes = [], []
        for c in g.clumps:
            box = clump_box_xywh_in_frame(c["x"], c["y"], g.psf_fwhm_px, options.image_size,
                                          options.image_size)
            if box is not None:
                boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]])
                classes.append(1 if c["odd"] else 0)
        galaxies.append({"rgb": g.rgb, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                         "classes": np.asarray(classes, np.int64)})
    return galaxies


class Pipeline:
    """A model with the three calls the benchmark needs."""

    name = "pipeline"

    def infer(self, galaxies: List[Dict]) -> None:
        raise NotImplementedError

    def train_step(self, galaxies: List[Dict]) -> None:
        raise NotImplementedError

    def flops_per_image(self, galaxy: Dict) -> float:
        raise NotImplementedError


class Detectron2Pipeline(Pipeline):
    """Our detector, built from a clump_d2 config (random weights unless the config has any)."""

    def __init__(self, cfg):
        self.name = "clump_d2"
        self.spec = ("clump_d2", cfg)
        self.cfg = cfg
        self.model = apply_channels_last(build_model(cfg), cfg)
        if cfg.MODEL.WEIGHTS:
            ClumpCheckpointer.from_config(cfg, self.model).load(cfg.MODEL.WEIGHTS)
        self.autocast = lambda: inference_autocast(cfg)
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.bgr = cfg.INPUT.FORMAT == "BGR"
        # The config's deterministic resize, for training (True) and inference (False).
        self._resize = {
            is_train: T.AugmentationList([a for a in build_clump_augmentations(cfg, is_train)
                                          if isinstance(a, T.ResizeShortestEdge)])
            for is_train in (True, False)}

    def _inputs(self, galaxies, with_targets=False):
        """Model inputs as the config's data loader makes them: the config's resize
        (``INPUT.MIN_SIZE_TRAIN``/``_TEST``; none at native resolution) applied to the image
        and boxes; ``height``/``width`` stay the galaxy's, so outputs come back in its
        pixels. Random flips/rotations are left out (they cost nothing measurable)."""
        resize = self._resize[with_targets]
        inputs = []
        for g in galaxies:
            rgb = g["rgb"][..., ::-1] if self.bgr else g["rgb"]
            aug = T.AugInput(np.ascontiguousarray(rgb), boxes=g["boxes"].copy())
            resize(aug)
            image = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
            item = {"image": image, "height": rgb.shape[0], "width": rgb.shape[1]}
            if with_targets:
                inst = Instances(image.shape[1:])
                inst.gt_boxes = Boxes(torch.as_tensor(aug.boxes, dtype=torch.float32))
                inst.gt_classes = torch.as_tensor(g["classes"])
                item["instances"] = inst
            inputs.append(item)
        return inputs

    def infer(self, galaxies):
        self.model.eval()
        with torch.inference_mode(), self.autocast():
            self.model(self._inputs(galaxies))

    def train_step(self, galaxies):
        self.model.train()
        with EventStorage():  # detectron2's losses log into an event storage
            losses = self.model(self._inputs(galaxies, with_targets=True))
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()

    def flops_per_image(self, galaxy):
        self.model.eval()
        counter = D2FlopCountAnalysis(self.model, self._inputs([galaxy]))
        counter.unsupported_ops_warnings(False)
        counter.uncalled_modules_warnings(False)
        return float(counter.total())


class PaperPipeline(Pipeline):
    """torchvision ``fasterrcnn_resnet50_fpn`` as Popp et al. 2024 used it (random weights)."""

    def __init__(self, min_size: int = 800, device: str = "cpu"):
        self.name = "paper"
        self.spec = ("paper", min_size, device)
        self.device = torch.device(device)
        self.model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=3, min_size=min_size,
            max_size=max(1333, min_size)).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)

    def _images(self, galaxies):
        return [torch.as_tensor(g["rgb"].transpose(2, 0, 1).copy(), device=self.device).float()
                / 255.0 for g in galaxies]

    def infer(self, galaxies):
        self.model.eval()
        with torch.inference_mode():
            self.model(self._images(galaxies))

    def train_step(self, galaxies):
        self.model.train()
        targets = [{"boxes": torch.as_tensor(g["boxes"], device=self.device),
                    "labels": torch.as_tensor(g["classes"] + 1, device=self.device)}
                   for g in galaxies]
        losses = self.model(self._images(galaxies), targets)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()

    def flops_per_image(self, galaxy):
        self.model.eval()
        counter = FlopCountAnalysis(self.model, (self._images([galaxy]),))
        counter.unsupported_ops_warnings(False)
        counter.uncalled_modules_warnings(False)
        return float(counter.total())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(items: List, size: int) -> List[List]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def time_inference(pipe: Pipeline, galaxies: List[Dict], batch_size: int) -> float:
    """Galaxies/s of one pass over ``galaxies``."""
    _sync(pipe.device)
    start = time.perf_counter()
    for batch in _batches(galaxies, batch_size):
        pipe.infer(batch)
    _sync(pipe.device)
    return len(galaxies) / (time.perf_counter() - start)


def time_train_step(pipe: Pipeline, galaxies: List[Dict]) -> float:
    """Images/s of one training step on ``galaxies``."""
    _sync(pipe.device)
    start = time.perf_counter()
    pipe.train_step(galaxies)
    _sync(pipe.device)
    return len(galaxies) / (time.perf_counter() - start)


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def build_pipeline(spec) -> Pipeline:
    """A pipeline from its ``spec`` (what a fresh process needs to rebuild it)."""
    if spec[0] == "clump_d2":
        return Detectron2Pipeline(spec[1])
    return PaperPipeline(*spec[1:])


def _rss_rise_while(fn: Callable[[], None]) -> Optional[float]:
    """Rise (MiB) of the resident set above its level before ``fn``, sampled every
    millisecond by a background thread while ``fn`` runs."""
    start = _rss_bytes()
    if start is None:
        return None
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], _rss_bytes() or 0)
    return (peak[0] - start) / 2**20


def _fresh_process_peak(spec, what: str, galaxies: List[Dict], threads: int, queue) -> None:
    """Child of :func:`peak_memory_mb`: build the pipeline, then measure one call of
    ``what`` from a cold allocator. (Unpickling this function imported ``clump_d2``, and
    with it the compat layer, already.)"""
    torch.set_num_threads(threads)
    pipe = build_pipeline(spec)
    call = pipe.infer if what == "infer" else pipe.train_step
    queue.put(_rss_rise_while(lambda: call(galaxies)))


def peak_memory_mb(pipe: Pipeline, what: str, galaxies: List[Dict]) -> Optional[float]:
    """Peak extra memory (MiB) of one ``pipe.infer`` / ``pipe.train_step`` (``what``) on
    ``galaxies``: on CUDA the allocator's peak; on the CPU the rise of the resident set in a
    fresh (spawned) process that has built the same pipeline, so that memory the allocator
    kept from earlier calls does not hide the peak. (A forked child would inherit that
    memory, and deadlocks in torch's thread pool.)"""
    call = pipe.infer if what == "infer" else pipe.train_step
    if pipe.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipe.device)
        base = torch.cuda.memory_allocated(pipe.device)
        call(galaxies)
        return (torch.cuda.max_memory_allocated(pipe.device) - base) / 2**20
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_fresh_process_peak,
                        args=(pipe.spec, what, galaxies, torch.get_num_threads(), queue))
    child.start()
    value = None
    while True:
        try:
            value = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not child.is_alive():  # died (e.g. out of memory): no figure, not a wrong one
                logger.warning("peak-memory measurement of %s %s failed (exit code %s)",
                               pipe.name, what, child.exitcode)
                break
    child.join()
    return value


def sgemm_flops_per_s(n: int, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matrix multiply (2 n^3 flops), best of ``repeats``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def machine_info(device: torch.device) -> Dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(cfg, options: BenchmarkOptions, vs_paper: bool = False,
                  show_progress: bool = True) -> Dict:
    """Measure our config (and the paper's pipeline, alternately); returns the result dict."""
    torch.manual_seed(options.seed)
    galaxies = make_galaxies(options)
    pipes: List[Pipeline] = [Detectron2Pipeline(cfg)]
    if vs_paper:
        pipes.append(PaperPipeline(options.paper_min_size, cfg.MODEL.DEVICE))
    device = pipes[0].device
    train_set = galaxies[: options.train_batch]
    result: Dict = {"machine": machine_info(device), "options": options.__dict__.copy(),
                    "config": {"file": getattr(cfg, "_source_file", ""),
                               "backbone": cfg.MODEL.BACKBONE.NAME,
                               "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
                               "channels_last": bool(cfg.MODEL.CHANNELS_LAST),
                               "test_amp": cfg.TEST.AMP.DTYPE if cfg.TEST.AMP.ENABLED else "off"}}
    samples: Dict[str, Dict[str, List[float]]] = {p.name: {"infer": [], "train": []}
                                                  for p in pipes}
    for pipe in pipes:  # warm-up: first calls allocate and pick kernels
        pipe.infer(galaxies[: options.batch_size])
        pipe.train_step(train_set)
    steps = max(options.runs, options.train_iters)
    progress = tqdm(total=steps * len(pipes), desc="benchmark", unit="round",
                    disable=not show_progress)
    for step in range(steps):
        for pipe in pipes:  # alternate, so load changes hit every pipeline alike
            if step < options.runs:
                samples[pipe.name]["infer"].append(
                    time_inference(pipe, galaxies, options.batch_size))
            if step < options.train_iters:
                samples[pipe.name]["train"].append(time_train_step(pipe, train_set))
            progress.update()
    progress.close()
    peak = sgemm_flops_per_s(options.gemm_size, device)
    result["sgemm_gflops_per_s"] = peak / 1e9
    for pipe in pipes:
        infer = statistics.median(samples[pipe.name]["infer"])
        train = statistics.median(samples[pipe.name]["train"])
        flops = pipe.flops_per_image(galaxies[0])
        result[pipe.name] = {
            "inference_galaxies_per_s": infer,
            "inference_samples": samples[pipe.name]["infer"],
            "train_images_per_s": train,
            "train_samples": samples[pipe.name]["train"],
            "gflops_per_image": flops / 1e9,
            "fraction_of_sgemm_peak_inference": 2.0 * flops * infer / peak,
            "peak_memory_mb_inference": peak_memory_mb(pipe, "infer",
                                                       galaxies[: options.batch_size]),
            "peak_memory_mb_train": peak_memory_mb(pipe, "train", train_set),
        }
    if vs_paper:
        ours, paper = result["clump_d2"], result["paper"]
        result["ratio_ours_over_paper"] = {
            "inference_galaxies_per_s": ours["inference_galaxies_per_s"]
            / paper["inference_galaxies_per_s"],
            "train_images_per_s": ours["train_images_per_s"] / paper["train_images_per_s"],
            "gflops_per_image": ours["gflops_per_image"] / paper["gflops_per_image"],
        }
    return result


def _fmt(value, digits=2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(result: Dict) -> str:
    """The result as a Markdown table (one column per pipeline, plus the ratio)."""
    names = [n for n in ("clump_d2", "paper") if n in result]
    rows = [
        ("inference galaxies/s", "inference_galaxies_per_s", 2),
        ("training images/s", "train_images_per_s", 2),
        ("GFLOPs / image (fvcore)", "gflops_per_image", 1),
        ("fraction of sgemm peak (inference)", "fraction_of_sgemm_peak_inference", 3),
        ("peak memory, inference batch (MiB)", "peak_memory_mb_inference", 0),
        ("peak memory, training step (MiB)", "peak_memory_mb_train", 0),
    ]
    ratio = result.get("ratio_ours_over_paper", {})
    header = "| figure | " + " | ".join(names) + (" | ours / paper |" if ratio else " |")
    lines = [header, "|---" * (len(names) + 1 + bool(ratio)) + "|"]
    for label, key, digits in rows:
        cells = [_fmt(result[n].get(key), digits) for n in names]
        if ratio:
            cells.append(_fmt(ratio.get(key), 2) + "x" if key in ratio else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    m = result["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
                 f"({m['torch_threads']} threads), device {m['device']}; sgemm peak "
                 f"{result['sgemm_gflops_per_s']:.1f} GFLOP/s. "
                 f"{result['options']['num_images']} galaxies of {result['options']['image_size']}"
                 f" px, batch {result['options']['batch_size']}, median of "
                 f"{result['options']['runs']} runs.")
    return "\n".join(lines)


def write_results(result: Dict, out_dir: str | os.PathLike) -> Dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "benchmark.json", "markdown": out_dir / "benchmark.md"}
    paths["json"].write_text(json.dumps(result, indent=2))
    text = markdown_table(result) if "machine" in result else ""
    if result.get("catalogue_scaling"):
        text += ("\n\nCatalogue throughput (tools/predict_catalog.py):\n\n"
                 + scaling_table(result["catalogue_scaling"]))
    paths["markdown"].write_text(text.strip() + "\n")
    return paths


# --- catalogue throughput vs number of galaxies ------------------------------------------------


def make_image_pool(pool_dir: str | os.PathLike, n: int, image_size: int = 200) -> List[Path]:
    """``n`` distinct synthetic galaxy PNGs (the generator's ``test`` split) in ``pool_dir``;
    made once, reused while the count and size match."""
    pool_dir = Path(pool_dir)
    json_path = pool_dir / "annotations" / "test.json"
    images = json.loads(json_path.read_text())["images"] if json_path.exists() else []
    if len(images) != n or any(im["width"] != image_size for im in images):
        make_split(pool_dir, "test", n, params=SyntheticParams(image_size=image_size),
                   show_progress=False)
        images = json.loads(json_path.read_text())["images"]
    return [pool_dir / "images" / im["file_name"] for im in images]


def write_scaling_catalogue(path: Path, pool: List[Path], n_galaxies: int) -> Path:
    """A galaxy catalogue (CSV) of ``n_galaxies`` rows with unique ids, cycling through the
    image pool: each row is read, decoded and detected like a distinct galaxy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["galaxy_id", "file_name"])
        for k in range(n_galaxies):
            writer.writerow([f"g{k:07d}", str(pool[k % len(pool)].resolve())])
    return path


PHOTOMETRY_MODES = ("off", "on")


def catalogue_scaling(config_file: str, counts: List[int], out_dir: str | os.PathLike,
                      predict_tool: str | os.PathLike, opts: Optional[List[str]] = None,
                      pool_size: int = 200, image_size: int = 200,
                      photometry: Sequence[str] = PHOTOMETRY_MODES) -> List[Dict]:
    """Run ``predict_tool`` (``tools/predict_catalog.py``; a fresh process each, as a user
    would) on catalogues of ``counts`` galaxies, once per ``photometry`` mode (``"off"``:
    ``--no-photometry``; ``"on"``: every detection measured); returns one dict per count and
    mode: galaxies/s of the inference loop (``galaxies_per_second`` of the tool's summary:
    model and photometry) and of the whole command (start-up, model build, merge and
    catalogue writing included). With both modes, each count runs them back to back, in
    alternating order from count to count, so that a change of machine load hits both alike;
    :func:`photometry_ratios` compares them.

    A config without ``MODEL.WEIGHTS`` is timed with its initial weights, saved to
    ``out_dir/initial_weights.pth`` (the catalogue tool refuses a model without weights; the
    timings do not depend on the values)."""
    out_dir = Path(out_dir)
    pool = make_image_pool(out_dir / "pool", min(pool_size, max(counts)), image_size)
    tool = Path(predict_tool)
    opts = list(opts or [])
    cfg = build_config(config_file, opts)
    if not cfg.MODEL.WEIGHTS:
        weights = out_dir / "initial_weights.pth"
        torch.save({"model": build_model(cfg).state_dict()}, weights)
        logger.warning("%s has no MODEL.WEIGHTS: timing its initial weights (%s)", config_file,
                       weights)
        opts += ["MODEL.WEIGHTS", str(weights)]
    wrong = [m for m in photometry if m not in PHOTOMETRY_MODES]
    if wrong or not photometry:
        raise ValueError(f"photometry modes must be among {PHOTOMETRY_MODES}, not "
                         f"{list(photometry)}")
    rows = []
    for i, n in enumerate(counts):
        table = write_scaling_catalogue(out_dir / f"catalogue_{n}.csv", pool, n)
        modes = list(photometry) if i % 2 == 0 else list(photometry)[::-1]
        for mode in modes:
            suffix = "" if len(photometry) == 1 else f"_photometry_{mode}"
            output = out_dir / f"clumps_{n}{suffix}.parquet"
            cmd = [sys.executable, str(tool), "--input", str(table), "--output", str(output),
                   "--overwrite", "--no-progress", "--config-file", config_file,
                   *(["--no-photometry"] if mode == "off" else []), *opts]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"predict_catalog.py failed on {n} galaxies (photometry "
                                   f"{mode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            summary = json.loads(output.with_name(f"{output.stem}_summary.json").read_text())
            rows.append({"galaxies": n, "photometry": mode, "catalogued": summary["galaxies"],
                         "clumps": summary["clumps"], "shards": summary["shards"],
                         "clumps_measured": summary.get("clumps_measured", 0),
                         "inference_galaxies_per_s": summary["galaxies_per_second"],
                         "command_seconds": round(wall, 2),
                         "command_galaxies_per_s": round(n / wall, 3)})
            logger.info("catalogue of %d galaxies, photometry %s: %.2f galaxies/s (inference),"
                        " %.1f s in all", n, mode, summary["galaxies_per_second"] or float("nan"),
                        wall)
    rows.sort(key=lambda r: (counts.index(r["galaxies"]),
                             PHOTOMETRY_MODES.index(r["photometry"])))
    return rows


def photometry_ratios(rows: List[Dict]) -> List[Dict]:
    """Per count with both modes: throughput with photometry on / off (inference loop and
    whole command); the issue's target is >= 0.8."""
    by = {(r["galaxies"], r["photometry"]): r for r in rows}
    out = []
    for n in dict.fromkeys(r["galaxies"] for r in rows):
        on, off = by.get((n, "on")), by.get((n, "off"))
        if on is None or off is None:
            continue
        out.append({"galaxies": n,
                    "inference_on_over_off": _ratio(on["inference_galaxies_per_s"],
                                                    off["inference_galaxies_per_s"]),
                    "command_on_over_off": _ratio(on["command_galaxies_per_s"],
                                                  off["command_galaxies_per_s"])})
    return out


def _ratio(a, b) -> Optional[float]:
    return round(a / b, 3) if a and b else None


def scaling_table(rows: List[Dict]) -> str:
    """Markdown: one line per count and photometry mode, then the on/off ratios."""
    lines = ["| galaxies | photometry | inference galaxies/s | whole command, s | "
             "whole command, galaxies/s | clumps | clumps measured |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['galaxies']:,} | {r.get('photometry', 'on')} | "
                     f"{_fmt(r['inference_galaxies_per_s'])} | {r['command_seconds']:.1f} | "
                     f"{_fmt(r['command_galaxies_per_s'])} | {r['clumps']:,} | "
                     f"{r.get('clumps_measured', 0):,} |")
    ratios = photometry_ratios(rows)
    if ratios:
        lines += ["", "| galaxies | throughput on / off, inference loop | on / off, whole "
                  "command |", "|---|---|---|"]
        for r in ratios:
            lines.append(f"| {r['galaxies']:,} | {_fmt(r['inference_on_over_off'])} | "
                         f"{_fmt(r['command_on_over_off'])} |")
    return "\n".join(lines)


def write_scaling_table(result: Dict, path: str | os.PathLike, command: str) -> Path:
    """The catalogue-scaling table as its own Markdown page (with the command that wrote it
    and the machine) and its JSON beside it (same stem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = result.get("machine") or machine_info(torch.device("cpu"))
    text = (f"Catalogue throughput of `tools/predict_catalog.py`, photometry off and on in the "
            f"same run (written by `{command}`).\n\n{scaling_table(result['catalogue_scaling'])}"
            f"\n\nMachine: {m['cpu']}, {m['cores']} cores, device {m['device']}, torch "
            f"{m['torch']}.\n")
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps(
        {"command": command, "machine": m, "catalogue_scaling": result["catalogue_scaling"],
         "photometry_ratios": photometry_ratios(result["catalogue_scaling"])}, indent=2))
    return path


# --- the path a user takes: real cut-outs through the catalogue vs the paper's pipeline --------


def read_centre_crop(path: str | os.PathLike, size: int) -> np.ndarray:
    """RGB uint8 of an image file's central ``size`` px (the whole image if not larger)."""
    from PIL import Image  # here: only this measurement reads images itself

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    if h > size and w > size:
        y0, x0 = (h - size) // 2, (w - size) // 2
        rgb = rgb[y0:y0 + size, x0:x0 + size]
    return np.ascontiguousarray(rgb)


def time_paper_on_files(pipe: "PaperPipeline", files: Sequence[str | os.PathLike],
                        batch_size: int, crop: int) -> float:
    """Galaxies/s of the paper's pipeline on image files: each read, cut to its central
    ``crop`` px (the paper's detector sees the central 200 px) and detected, in batches."""
    _sync(pipe.device)
    start = time.perf_counter()
    for batch in _batches(list(files), batch_size):
        pipe.infer([{"rgb": read_centre_crop(f, crop)} for f in batch])
    _sync(pipe.device)
    return len(files) / (time.perf_counter() - start)


def user_path_benchmark(cfg, files: Sequence[str | os.PathLike], work_dir: str | os.PathLike,
                        *, runs: int = 3, batch_size: int = 8, paper_min_size: int = 800,
                        paper_crop: int = 200, show_progress: bool = True) -> Dict:
    """The recommended path as a user runs it against the paper's pipeline, on the same real
    cut-outs, in one process, alternately (ours without photometry, ours with, paper, ...):

    * ours: :func:`clump_d2.inference.predict.run_catalogue` with ``cfg`` as it is (test-time
      augmentation, ``INFERENCE.CENTRE_CROP``, catalogue post-processing, the data loader),
      photometry off and on; galaxies/s of its inference loop (``galaxies_per_second`` of the
      run's summary: reading, model, post-processing, photometry; the model built once);
    * paper: torchvision ``fasterrcnn_resnet50_fpn`` at ``paper_min_size`` on the central
      ``paper_crop`` px of each file (reading included), random weights.

    Returns medians over ``runs``, every sample, the ratios, and what the last catalogue
    found (galaxies, clumps) so the figures are of a run that did its job."""
    from clump_d2.inference.predict import build_inference_model, run_catalogue

    files = [str(f) for f in files]
    records = [{"galaxy_id": Path(f).stem, "file_name": f} for f in files]
    work = Path(work_dir)
    model = build_inference_model(cfg)
    variants = {}
    for mode in PHOTOMETRY_MODES:
        c = cfg.clone()
        c.defrost()
        c.PHOTOMETRY.ENABLED = mode == "on"
        c.freeze()
        variants[f"photometry {mode}"] = c
    paper = PaperPipeline(paper_min_size, cfg.MODEL.DEVICE)
    samples: Dict[str, List[float]] = {name: [] for name in [*variants, "paper"]}
    found: Dict[str, Dict] = {}

    def ours(name, c):
        result = run_catalogue(c, records, work / f"{name.replace(' ', '_')}.parquet",
                               model=model, model_tag=name, overwrite=True, progress=False)
        found[name] = {k: result.summary.get(k) for k in ("galaxies", "ok", "no_clumps",
                                                           "unreadable", "failed", "clumps")}
        return result.summary["galaxies_per_second"]

    for name, c in variants.items():  # warm-up: kernels, photutils, the loader
        ours(name, c)
    time_paper_on_files(paper, files[:batch_size], batch_size, paper_crop)
    bar = tqdm(total=runs * 3, desc="user path", unit="run", disable=not show_progress)
    for _ in range(runs):
        for name, c in variants.items():
            samples[name].append(ours(name, c))
            bar.update()
        samples["paper"].append(time_paper_on_files(paper, files, batch_size, paper_crop))
        bar.update()
    bar.close()
    median = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "machine": machine_info(torch.device(cfg.MODEL.DEVICE)),
        "galaxies": len(files),
        "config": {"tta": bool(cfg.TEST.DIHEDRAL_TTA.ENABLED),
                   "centre_crop": int(cfg.INFERENCE.CENTRE_CROP),
                   "batch_size": int(cfg.INFERENCE.BATCH_SIZE),
                   "num_workers": int(cfg.DATALOADER.NUM_WORKERS),
                   "weights": str(cfg.MODEL.WEIGHTS)},
        "paper": {"min_size": paper_min_size, "crop": paper_crop, "batch_size": batch_size},
        "runs": runs, "samples": samples, "galaxies_per_s": median,
        "ours_over_paper": {name: median[name] / median["paper"] for name in variants},
        "catalogue": found,
    }


def user_path_table(result: Dict, command: str = "") -> str:
    """Markdown of :func:`user_path_benchmark`: galaxies/s (median and range) of each path and
    ours / paper, with the command and the machine."""
    m, cfg = result["machine"], result["config"]
    lines = []
    if command:
        lines += [f"Written by `{command}`.", ""]
    lines += ["| path | galaxies/s (median) | runs | ours / paper |", "|---|---|---|---|"]
    for name, value in result["galaxies_per_s"].items():
        runs = result["samples"][name]
        label = (f"clump_d2 catalogue, {name}" if name != "paper" else
                 f"paper's pipeline (R50-FPN, central {result['paper']['crop']} px at "
                 f"{result['paper']['min_size']} px)")
        ratio = result["ours_over_paper"].get(name)
        lines.append(f"| {label} | {value:.3f} | {min(runs):.3f}-{max(runs):.3f} | "
                     + (f"**{ratio:.1f}x** |" if ratio else " |"))
    last = result["catalogue"].get("photometry on", {})
    lines += ["", f"{result['galaxies']} real cut-outs, median of {result['runs']} runs, "
              f"alternating. Ours: test-time augmentation {'on' if cfg['tta'] else 'off'}, "
              f"centre crop {cfg['centre_crop'] or 'none'}, batch {cfg['batch_size']}, "
              f"{cfg['num_workers']} loader workers, weights `{cfg['weights']}`; the "
              f"catalogue found {last.get('clumps')} clumps in {last.get('galaxies')} galaxies "
              f"({last.get('unreadable')} unreadable, {last.get('failed')} failed). Machine: "
              f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
              f"threads), device {m['device']}."]
    return "\n".join(lines) + "\n"

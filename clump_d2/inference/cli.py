"""Command lines of ``tools/predict_catalog.py``, ``tools/visualize.py`` and
``tools/export_model.py`` (parsers and mains live here, where tests reach them)."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List, Optional

import torch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

logger = logging.getLogger(__name__)


def _common_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pth")
    return parser


def _parse_band_columns(text: str) -> Dict[str, str]:
    """``"g=file_g,r=file_r"`` -> ``{"g": "file_g", "r": "file_r"}`` (band order kept)."""
    out: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"--band-columns: {part!r} is not BAND=COLUMN")
        band, column = part.split("=", 1)
        out[band.strip()] = column.strip()
    return out


def predict_parser() -> argparse.ArgumentParser:
    parser = _common_parser(
        "Run a clump detector over a folder of images, a COCO JSON or a galaxy catalogue "
        "(CSV/Parquet/FITS table) and write a clump catalogue (Parquet, CSV or FITS).")
    parser.add_argument("--input", required=True,
                        help="folder of images, COCO .json, or catalogue .csv/.parquet/.fits")
    parser.add_argument("--output", default="",
                        help="catalogue path: .parquet (default OUTPUT_DIR/clumps.parquet), "
                             ".csv or .fits")
    parser.add_argument("--image-root", default=None,
                        help="folder of relative image paths (default: the JSON's images/ or "
                             "the catalogue's folder)")
    parser.add_argument("--id-column", default=None, help="catalogue: galaxy id column")
    parser.add_argument("--image-column", default=None, help="catalogue: image path column")
    parser.add_argument("--band-columns", type=_parse_band_columns, default={},
                        help="catalogue: one FITS file per band, e.g. g=file_g,r=file_r,i=file_i")
    parser.add_argument("--ra-column", default=None, help="catalogue: RA (deg) of the centre")
    parser.add_argument("--dec-column", default=None, help="catalogue: Dec (deg) of the centre")
    parser.add_argument("--pixel-scale-column", default=None,
                        help="catalogue: pixel scale (arcsec/px, times --pixel-scale-factor)")
    parser.add_argument("--pixel-scale-factor", type=float, default=1.0,
                        help="multiplies the pixel-scale column (Galaxy Zoo: 0.02 x PETROR90_R)")
    parser.add_argument("--psf-column", default=None, help="catalogue: PSF FWHM in pixels")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the shards of an earlier run instead of resuming it")
    parser.add_argument("--max-shards", type=int, default=None,
                        help="stop after this many shards per process (resume later)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="debug logging (tracebacks of unreadable images)")
    parser.add_argument("--num-gpus", type=int, default=0, help="GPUs per machine")
    parser.add_argument("--num-workers", type=int, default=1,
                        help="CPU processes per machine when --num-gpus is 0 (gloo)")
    parser.add_argument("--num-machines", type=int, default=1, help="total machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank")
    parser.add_argument("--dist-url", default="auto",
                        help="tcp://host:port of the main machine ('auto': a free local port)")
    return parser


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


def _setup_logging(verbose: bool) -> None:
    for name in ("clump_d2", "detectron2"):
        setup_logger(name=name, distributed_rank=comm.get_rank(), abbrev_name=name[:2])
        # Detectron2's set-up logs DEBUG; tracebacks of single unreadable images are DEBUG,
        # one line each is WARNING, so a survey's broken files do not flood the console.
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Each shard's loader logs its serialisation; not news.
    logging.getLogger("detectron2.data.common").setLevel(logging.WARNING)


def predict_main(args) -> Optional[Dict]:
    """Body of ``tools/predict_catalog.py`` in each process; returns the summary (main)."""
    from clump_d2.engine.defaults import build_config

    from .inputs import CatalogueColumns, load_records
    from .predict import run_catalogue

    import clump_d2.data  # noqa: F401  (registers the datasets, for class names)

    _setup_logging(args.verbose)
    cfg = build_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE == "cpu":
        set_cpu_threads(cfg.INFERENCE.CPU_THREADS)
    columns = CatalogueColumns(
        id=args.id_column, image=args.image_column, band_files=args.band_columns,
        ra=args.ra_column, dec=args.dec_column, pixel_scale=args.pixel_scale_column,
        pixel_scale_factor=args.pixel_scale_factor, psf_fwhm_px=args.psf_column,
        image_root=args.image_root)
    records = load_records(args.input, image_root=args.image_root, columns=columns)
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "clumps.parquet")
    result = run_catalogue(cfg, records, output, overwrite=args.overwrite,
                           max_shards=args.max_shards, progress=not args.no_progress)
    return result.summary if comm.is_main_process() else None


def run_predict(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` and run :func:`predict_main` in as many processes as asked."""
    from .launch import launch_inference

    args = predict_parser().parse_args(argv)
    launch_inference(predict_main, (args,), num_gpus=args.num_gpus,
                     num_workers=args.num_workers, num_machines=args.num_machines,
                     machine_rank=args.machine_rank, dist_url=args.dist_url)


def visualize_parser() -> argparse.ArgumentParser:
    from .visualize import SELECTIONS

    parser = _common_parser(
        "Draw truth (a registered dataset) and predictions (a model, a COCO results JSON or a "
        "clump catalogue) side by side with Detectron2's Visualizer; one PNG per galaxy and a "
        "contact sheet.")
    parser.add_argument("--dataset", required=True, help="registered dataset, e.g. clumpsim_val")
    parser.add_argument("--predictions", default="model",
                        help="'model' (config + MODEL.WEIGHTS), a COCO results .json, or a "
                             "catalogue .parquet/.csv/.fits")
    parser.add_argument("--select", default="worst-missed", choices=SELECTIONS,
                        help="which galaxies to draw")
    parser.add_argument("--num", type=int, default=16, help="how many galaxies")
    parser.add_argument("--ids", default="", help="comma-separated image ids (--select ids)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --select random")
    parser.add_argument("--scale", type=float, default=2.0, help="zoom of each image")
    parser.add_argument("--columns", type=int, default=None, help="contact sheet columns")
    parser.add_argument("--output-dir", default="", help="default: OUTPUT_DIR/vis/<dataset>")
    return parser


def visualize_main(argv: Optional[List[str]] = None) -> Dict:
    """Body of ``tools/visualize.py``."""
    from clump_d2.engine.defaults import build_config, prepare_datasets

    from .visualize import visualize_dataset

    import clump_d2.data  # noqa: F401  (registers the datasets)

    args = visualize_parser().parse_args(argv)
    _setup_logging(False)
    cfg = build_config(args.config_file, args.opts, freeze=False)
    # Only this dataset matters here (generated on first use if it is the synthetic one).
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = (args.dataset,)
    cfg.freeze()
    prepare_datasets(cfg)
    ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    select = "ids" if ids else args.select
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "vis", args.dataset)
    return visualize_dataset(cfg, args.dataset, output_dir, predictions=args.predictions,
                             select=select, num=args.num, ids=ids, seed=args.seed,
                             scale=args.scale, columns=args.columns)


def export_parser() -> argparse.ArgumentParser:
    parser = _common_parser(
        "Export a trained clump detector as TorchScript (traced), check that it reproduces "
        "the PyTorch boxes on the given images, and write <output>.json beside it.")
    parser.add_argument("--output", default="", help="default: OUTPUT_DIR/model.ts")
    parser.add_argument("--image", action="append", default=[],
                        help="image to trace on (first) and check on (all); repeatable. "
                             "Default: the first two images of DATASETS.TEST[0]")
    return parser


def export_cli(argv: Optional[List[str]] = None) -> Dict:
    """Body of ``tools/export_model.py``."""
    from clump_d2.engine.defaults import build_config, prepare_datasets

    from .export import export_main, first_images_of

    import clump_d2.data  # noqa: F401  (registers the datasets)

    args = export_parser().parse_args(argv)
    _setup_logging(False)
    cfg = build_config(args.config_file, args.opts)
    images = args.image
    if not images:
        test_only = cfg.clone()
        test_only.defrost()
        test_only.DATASETS.TRAIN = ()  # only the test images are needed
        prepare_datasets(test_only)
        images = first_images_of(cfg.DATASETS.TEST[0], 2)
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "model.ts")
    return export_main(cfg, output, images)

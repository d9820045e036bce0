"""Every configuration key clump_d2 adds to Detectron2's, in one place.

Call ``add_clump_config(cfg)`` on ``detectron2.config.get_cfg()`` *before*
``merge_from_file``. Detectron2's global defaults are never changed.
Each area owns a section below (data, backbone, evaluation, training, inference).

Score thresholds: one key each, one default each.

==================================== ======= ==============================================
key                                  default what it bounds
==================================== ======= ==============================================
``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` 0.05   model output floor: boxes below it are never
                                             output (Detectron2's key); keep it <= the lowest
                                             threshold swept, or the curves are cut off
``TEST.CLUMP_EVAL.SCORE_THRESH``      0.5    operating point: completeness/purity, pictures,
                                             baseline, injection-recovery
catalogue (same key:                  0.5    what the catalogue keeps, before its NMS, PSF
``TEST.CLUMP_EVAL.SCORE_THRESH``)            merging and bulge flag
==================================== ======= ==============================================

The completeness/purity curves sweep ``TEST.CLUMP_EVAL.CURVE_POINTS`` thresholds in [0, 1].

Renamed keys (a YAML or override using the old name fails with a message naming the new
one): ``MODEL.CLUMP_EVAL.*`` -> ``TEST.CLUMP_EVAL.*`` (Detectron2 keeps evaluation settings
under ``TEST``); ``INFERENCE.SCORE_THRESH`` -> ``TEST.CLUMP_EVAL.SCORE_THRESH`` (the
catalogue keeps the detections at the operating point).
"""
from detectron2.config import CfgNode as CN

from clump_d2.data.image_io import DEFAULT_MAX_PIXELS


def add_clump_config(cfg: CN) -> CN:
    """Add clump_d2's keys (with their defaults) to ``cfg`` in place and return it."""
    _add_data_config(cfg)
    _add_backbone_config(cfg)
    _add_evaluation_config(cfg)
    _add_training_config(cfg)
    _add_ignore_region_config(cfg)
    _add_inference_config(cfg)
    _add_photometry_config(cfg)
    _register_renamed_keys(cfg)
    return cfg


# --- data ------------------------------------------------------------------------------------
def _add_data_config(cfg: CN) -> None:
    cfg.INPUT.AUG = CN()
    # Sky orientation is arbitrary, so flips and 90-degree rotations are free augmentations.
    cfg.INPUT.AUG.HFLIP = True  # random horizontal flip (p=0.5) in training
    cfg.INPUT.AUG.VFLIP = True  # random vertical flip (p=0.5) in training
    cfg.INPUT.AUG.ROT90 = True  # random rotation by k*90 degrees, k uniform in 0..3, in training

    # Most pixels (width x height per plane) an image may declare; larger ones are refused
    # before decoding (the catalogue: status "unreadable: ..."). Default 1024 x 1024: why, and
    # the memory it bounds, in clump_d2/data/image_io.py and docs/reliability.md.
    cfg.INPUT.MAX_PIXELS = DEFAULT_MAX_PIXELS

    # FITS images (per-band files or a cube; see clump_d2/data/fits_io.py and stretch.py).
    cfg.INPUT.FITS = CN()
    # Bands in channel order; their count must equal len(MODEL.PIXEL_MEAN).
    cfg.INPUT.FITS.BANDS = ["g", "r", "i"]
    # Names of a cube's planes in order ([]: from header BAND<n>/FILTER<n>, else "0", "1"...).
    cfg.INPUT.FITS.CUBE_BANDS = []
    cfg.INPUT.FITS.HDU = -1  # HDU holding the image (-1: the first HDU with image data)
    cfg.INPUT.FITS.STRETCH = "asinh"  # "asinh", "lupton", "zscale" or "linear"
    cfg.INPUT.FITS.PERCENTILES = (0.5, 99.5)  # per-band clip interval of asinh/linear/lupton
    cfg.INPUT.FITS.ASINH_A = 0.1  # softening of the asinh stretch (smaller: stronger)
    cfg.INPUT.FITS.LUPTON_Q = 8.0  # Lupton et al. (2004) asinh softening Q
    cfg.INPUT.FITS.LUPTON_STRETCH = 0.0  # Lupton intensity mapped to 1 (0: the high percentile)
    # NaN/inf pixels become the band's "median" (~ sky), "zero" or "min" before stretching.
    cfg.INPUT.FITS.NAN_FILL = "median"
    # A band with a larger fraction of NaN/inf pixels is an error (not a galaxy image).
    cfg.INPUT.FITS.MAX_NONFINITE_FRACTION = 0.5
    # Stretched [0, 1] values are multiplied by this (255: same range as 8-bit PNGs, so the
    # same PIXEL_MEAN/STD apply; 1.0 for Zoobot-style [0, 1] inputs).
    cfg.INPUT.FITS.OUTPUT_SCALE = 255.0

    # Images per batch at evaluation (detectron2 0.6 evaluates one at a time).
    cfg.TEST.IMS_PER_BATCH = 8
    # Mixed precision at inference (evaluation, catalogues, benchmark): torch.autocast with
    # this dtype ("float16" or "bfloat16"). Off by default: it pays on GPUs, not on the CPU.
    # Training has Detectron2's own SOLVER.AMP.ENABLED (CUDA only).
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = False
    cfg.TEST.AMP.DTYPE = "float16"
    # Test-time augmentation: predict each cutout in its 8 flips/90-degree rotations and merge
    # by score voting (clump_d2/modeling/tta.py); boxes overlapping by >= MERGE_IOU are one
    # clump. 8x the inference time.
    cfg.TEST.DIHEDRAL_TTA = CN()
    cfg.TEST.DIHEDRAL_TTA.ENABLED = False
    cfg.TEST.DIHEDRAL_TTA.MERGE_IOU = 0.4
    # Views voting: 8 (all flips and rotations), 4 (the four rotations) or 2 (upright and
    # upside down): fewer views cost less (docs/speed.md measures what they keep).
    cfg.TEST.DIHEDRAL_TTA.VIEWS = 8
    # Inference runs the backbone (encoder + FPN) as a frozen TorchScript graph optimised for
    # inference (BatchNorm folded into the convolutions, oneDNN layouts on the CPU), traced once
    # per input shape (clump_d2/modeling/runtime.py). Same detections up to float rounding;
    # measured faster on the CPU (docs/speed.md). Off: the eager backbone.
    cfg.TEST.TRACED_BACKBONE = False

    cfg.DATASETS.SYNTHETIC = CN()
    # Generate the registered clumpsim_* datasets on first use if their files are missing.
    cfg.DATASETS.SYNTHETIC.AUTO_GENERATE = True
    cfg.DATASETS.SYNTHETIC.NUM_TRAIN = 600  # galaxies in clumpsim_train
    cfg.DATASETS.SYNTHETIC.NUM_VAL = 150  # galaxies in clumpsim_val
    cfg.DATASETS.SYNTHETIC.SEED = 0  # seed of the generator (same seed, same bytes)
    cfg.DATASETS.SYNTHETIC.IMAGE_SIZE = 200  # pixels, square (the paper's 200x200 crop)


# --- backbone --------------------------------------------------------------------------------
def _add_backbone_config(cfg: CN) -> None:
    # Convolution weights in channels-last (NHWC) memory format, for training and inference;
    # helps with mixed precision on recent GPUs, usually slows the CPU (default off).
    cfg.MODEL.CHANNELS_LAST = False
    # Used by the Zoobot backbones: MODEL.BACKBONE.NAME "build_zoobot_fpn_backbone" (FPN,
    # outputs p2..p6) or "build_zoobot_backbone" (the encoder alone). Input channels are
    # len(MODEL.PIXEL_MEAN). Zoobot encoders expect RGB in [0, 1]: PIXEL_MEAN [0, 0, 0],
    # PIXEL_STD [255, 255, 255], INPUT.FORMAT "RGB".
    cfg.MODEL.ZOOBOT = CN()
    # timm architecture of the encoder (e.g. convnext_nano, convnext_tiny, efficientnet_b0,
    # resnet50); anything timm builds with features_only=True.
    cfg.MODEL.ZOOBOT.ARCH = "convnext_nano"
    # Encoder weights: "" (random), "hf_hub:mwalmsley/zoobot-encoder-<arch>", a hub-layout
    # directory (config.json + model.safetensors), a .safetensors/.pth/.pt file, a Zoobot
    # Lightning .ckpt (encoder.* keys) or a Zoobot 1.x torchvision-layout ResNet checkpoint.
    # Loaded when the model is built, before MODEL.WEIGHTS (which, if set, overrides them).
    cfg.MODEL.ZOOBOT.WEIGHTS = ""
    # Which timm feature levels to output, named by stride: res2..res5 = strides 4..32.
    cfg.MODEL.ZOOBOT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Leading encoder stages frozen, in the order stem, res2, res3, res4, res5 (as
    # MODEL.BACKBONE.FREEZE_AT for detectron2's ResNet): 0 trains everything, 2 trains
    # res3..res5 (the paper's "3 trainable layers"), 5 freezes the whole encoder.
    cfg.MODEL.ZOOBOT.FREEZE_AT = 0
    # BatchNorm of the trained stages: "FrozenBN" (fixed statistics and affine), "" or "BN"
    # (trained), "SyncBN" (across GPUs). Frozen stages always get frozen BN.
    cfg.MODEL.ZOOBOT.NORM = ""
    # Skip (with a warning) checkpoint tensors whose shape differs from the model's instead of
    # failing. The stem is inflated to N bands regardless (mean kernel x 3/N).
    cfg.MODEL.ZOOBOT.ALLOW_SHAPE_MISMATCH = False
    # Allow weights files that are Python pickles (.pkl...): they run code; trusted files only.
    cfg.MODEL.WEIGHTS_ALLOW_PICKLE = False
    # Model weights that may keep their initialisation when training starts from MODEL.WEIGHTS
    # (regular expressions matched at the start of each key, so a prefix works), e.g.
    # ["roi_heads.box_predictor."] for a new head, or the FPN and heads above an ImageNet
    # backbone. Any other weight missing from the checkpoint, or of another shape, stops
    # training; inference needs every weight whatever this says. Default: none.
    cfg.MODEL.WEIGHTS_MAY_START_FRESH = []


# --- evaluation ------------------------------------------------------------------------------
def _add_evaluation_config(cfg: CN) -> None:
    # (Detectron2's MODEL.ROI_HEADS.SCORE_THRESH_TEST only bounds what the model outputs:
    # keep it <= the lowest threshold swept or looked at; see the table above.)
    cfg.TEST.CLUMP_EVAL = CN()
    # The operating point: detections with score >= it count for completeness/purity, are
    # drawn in the pictures, are what the baseline and injection-recovery report, and are
    # what the catalogue keeps (before its NMS, PSF merging and bulge flag).
    cfg.TEST.CLUMP_EVAL.SCORE_THRESH = 0.5
    # Matching criterion: "iou" (IoU >= IOU_THRESH) or "distance" (centre distance <=
    # DISTANCE_FACTOR x the true box's half side, i.e. x 1.25 PSF FWHM for Clump Scout boxes).
    cfg.TEST.CLUMP_EVAL.MATCH = "iou"
    cfg.TEST.CLUMP_EVAL.IOU_THRESH = 0.5  # IoU threshold of the "iou" criterion
    cfg.TEST.CLUMP_EVAL.DISTANCE_FACTOR = 1.0  # factor of the "distance" criterion
    cfg.TEST.CLUMP_EVAL.CURVE_POINTS = 101  # score thresholds of the sweep, evenly in [0, 1]
    cfg.TEST.CLUMP_EVAL.NUM_BINS = 5  # equal-count bins per attribute for binned completeness
    # Attributes of the true clumps to bin by; empty: every numeric one present (+ box_size).
    cfg.TEST.CLUMP_EVAL.BIN_ATTRIBUTES = []
    # Explicit bin edges overriding the equal-count bins, e.g. ["flux_frac:0.03,0.1,0.35"].
    cfg.TEST.CLUMP_EVAL.BIN_EDGES = []
    cfg.TEST.CLUMP_EVAL.PLOTS = True  # write the PNG plots next to clump_metrics.json
    # Ignore regions (besides iscrowd annotations, always ignored): true clumps whose numeric
    # attribute is below a limit, e.g. ["flux_frac_u:0.03"] (the paper's giant clumps). A
    # detection matched to an ignored clump counts as neither true nor false (as a COCO crowd
    # region); completeness is over the kept clumps (docs/evaluation.md).
    cfg.TEST.CLUMP_EVAL.IGNORE_BELOW = []
    # Also ignore clumps that lack an IGNORE_BELOW attribute (False: such clumps are kept).
    cfg.TEST.CLUMP_EVAL.IGNORE_MISSING = False
    # Ignore true clumps within this many PSF FWHM of the galaxy centre (the bulge; the
    # paper's "off-centre" clumps lie beyond 1 FWHM); 0 disables it.
    cfg.TEST.CLUMP_EVAL.IGNORE_CENTRE_FWHM = 0.0


# --- ignore regions ---------------------------------------------------------------------------
def _add_ignore_region_config(cfg: CN) -> None:
    # Annotations with iscrowd 1 are ignore regions (real but unlabelled: a host's own knots).
    # Used by MODEL.PROPOSAL_GENERATOR.NAME "IgnoreRegionRPN" and MODEL.ROI_HEADS.NAME
    # "IgnoreRegionROIHeads" (clump_d2/modeling/ignore_regions.py).
    cfg.MODEL.IGNORE_REGIONS = CN()
    # An anchor/proposal is inside an ignore region when this fraction of its area lies in one.
    cfg.MODEL.IGNORE_REGIONS.IOA_THRESH = 0.5
    # Training clumps whose numeric attribute is below a limit are ignore regions too, e.g.
    # ["flux_frac_u:0.01"]: train the bright end (the paper's giant clumps) without punishing
    # the detector for the fainter catalogue clumps it also sees. A clump without the
    # attribute is kept. Needs the two ignore-aware heads above.
    cfg.MODEL.IGNORE_REGIONS.BELOW = []


# --- training --------------------------------------------------------------------------------
def _add_training_config(cfg: CN) -> None:
    cfg.SOLVER.BEST_CHECKPOINT = CN()
    # Metric that picks the best checkpoint (saved as model_best.pth); "" disables it. With
    # several test datasets the name carries the dataset, e.g. "clumpsim_val/clumps/F1".
    cfg.SOLVER.BEST_CHECKPOINT.METRIC = "clumps/F1"
    cfg.SOLVER.BEST_CHECKPOINT.MODE = "max"  # "max" or "min"

    cfg.SOLVER.EARLY_STOPPING = CN()
    cfg.SOLVER.EARLY_STOPPING.ENABLED = False  # stop when the metric stops improving
    cfg.SOLVER.EARLY_STOPPING.METRIC = ""  # metric to watch; "" = SOLVER.BEST_CHECKPOINT.METRIC
    cfg.SOLVER.EARLY_STOPPING.MODE = "max"  # "max" or "min"
    # Evaluations (every TEST.EVAL_PERIOD) without an improvement > MIN_DELTA before stopping.
    cfg.SOLVER.EARLY_STOPPING.PATIENCE = 5
    cfg.SOLVER.EARLY_STOPPING.MIN_DELTA = 0.0  # smallest change that counts as an improvement
    # A tqdm progress bar over the training iterations (main process), beside Detectron2's
    # periodic log lines; tools/model_zoo.py rebuild turns it on.
    cfg.SOLVER.PROGRESS_BAR = False

    # Validation loss over all batches of the validation datasets every this many
    # iterations (0 = off); logged as validation/loss and validation/<loss term>.
    cfg.TEST.VAL_LOSS_PERIOD = 0
    # Datasets of the validation loss; empty = DATASETS.TEST.
    cfg.TEST.VAL_LOSS_DATASETS = ()


# --- inference -------------------------------------------------------------------------------
def _add_inference_config(cfg: CN) -> None:
    cfg.INFERENCE = CN()
    # The catalogue keeps detections at TEST.CLUMP_EVAL.SCORE_THRESH (the operating point),
    # then post-processes them with the keys below.
    # Class-agnostic NMS IoU threshold (a clump found as both clump and odd_clump is one
    # clump); 0 disables it.
    cfg.INFERENCE.NMS_THRESH = 0.5
    # Merge detections whose centres are closer than this x PSF FWHM (the brighter one is
    # kept); 0 disables it.
    cfg.INFERENCE.MERGE_FWHM = 1.0
    # Flag detections whose centre is within this x PSF FWHM of the galaxy centre (the bulge).
    cfg.INFERENCE.BULGE_FWHM = 1.0
    cfg.INFERENCE.DROP_BULGE = False  # drop flagged bulge detections instead of flagging them
    # PSF FWHM in pixels when the input gives none (psf_fwhm_px column); 0 estimates it per
    # detection as box side / 2.5 (Clump Scout boxes are 2.5 x FWHM).
    cfg.INFERENCE.PSF_FWHM_PX = 0.0
    cfg.INFERENCE.BATCH_SIZE = 8  # images per forward pass
    # > 0: search only the central CENTRE_CROP x CENTRE_CROP px of each image larger than that
    # (as the paper's detector sees the central 200 px of a 400 px Clump Scout image, and as
    # the real-host models were trained and measured); boxes are then in the crop's frame,
    # its corner in the catalogue's crop_x0 / crop_y0. 0: the whole image.
    cfg.INFERENCE.CENTRE_CROP = 0
    cfg.INFERENCE.SHARD_SIZE = 1000  # galaxies per shard (the unit of resuming)
    # Torch threads per CPU process (0: all cores shared among the processes). CPU results
    # are bit-identical between runs only at the same thread count per process.
    cfg.INFERENCE.CPU_THREADS = 0
    # The detector's selection function (a selection_function.csv of tools/inject_recover.py,
    # or "zoo:<name>": that zoo entry's): each clump's p_detect, the completeness at its flux
    # fraction and distance from the centre (needs PHOTOMETRY.ENABLED). "": none (p_detect NaN).
    cfg.INFERENCE.SELECTION_FUNCTION = ""
    cfg.INFERENCE.SKY = CN()
    # Orientation of images without a WCS, given RA/Dec of the image centre and a pixel scale.
    # "Up" is towards the first row of the stored array (the top of a PNG/JPEG).
    cfg.INFERENCE.SKY.NORTH_UP = True  # north towards the first row (SDSS cutouts: True)
    cfg.INFERENCE.SKY.EAST_LEFT = True  # east towards the first column (SDSS cutouts: True)
    # Position angle of "up", degrees from north through east (0: north is up).
    cfg.INFERENCE.SKY.ROTATION_DEG = 0.0


# --- photometry ------------------------------------------------------------------------------
def _add_photometry_config(cfg: CN) -> None:
    # Clump photometry, host segmentation and giant flags (clump_d2/photometry).
    cfg.PHOTOMETRY = CN()
    cfg.PHOTOMETRY.ENABLED = True  # measure every catalogue detection (fluxes, ratios, flags)
    cfg.PHOTOMETRY.APERTURE_FWHM = 1.0  # aperture radius, x PSF FWHM (Gaussian-corrected)
    cfg.PHOTOMETRY.ANNULUS_FWHM = (1.5, 2.0)  # local background: annulus / fit radius, x FWHM
    cfg.PHOTOMETRY.MASK_FWHM = 1.0  # other clumps masked in the annulus within this x FWHM
    # Host light under a clump: "fit" (quadratic surface + PSFs, joint) or "annulus" (mean).
    cfg.PHOTOMETRY.BACKGROUND = "fit"
    cfg.PHOTOMETRY.HOST_NSIGMA = 1.5  # host segment threshold, x sky rms (PSF-smoothed image)
    cfg.PHOTOMETRY.HOST_NPIXELS = 10  # fewest connected pixels of a segment
    cfg.PHOTOMETRY.HOST_DEBLEND = False  # deblend the host from touching sources (photutils)
    cfg.PHOTOMETRY.HOST_DEBLEND_CONTRAST = 0.3  # flux fraction a deblended child needs
    cfg.PHOTOMETRY.DETECTION_BAND = ""  # FITS band of the host segmentation ("": band sum)
    cfg.PHOTOMETRY.DROP_OUTSIDE_HOST = False  # the paper's rule: drop detections off the host
    cfg.PHOTOMETRY.GIANT_BAND = ""  # band of the giant flags ("": the bluest; RGB: "B")
    cfg.PHOTOMETRY.GIANT_THRESHOLDS_PCT = (3.0, 8.0)  # is_giant_<pct>pct: clump/host flux >= pct
    cfg.PHOTOMETRY.DISPLAY_Q = 10.0  # Lupton Q undone to linearise PNG/JPEG (display photometry)
    # PNG/JPEG only: (a, b[, c]) of log10 flux_ratio_B = a + b log10 f_u + c log10(B/R ratio),
    # inverted so that is_giant_<p>pct = predicted u-band fraction flux_ratio_u_est >= p %;
    # default fitted on the 24 GZH S82 galaxies (tools/measure_clumps.py calibrate-giant);
    # (): flags on the raw display B ratio. FITS input always keeps its true photometry.
    cfg.PHOTOMETRY.DISPLAY_GIANT_CALIBRATION = (-0.071, 1.254, 0.0)


# --- renamed keys ----------------------------------------------------------------------------
#: Old key -> new key. Merging a YAML or an override that uses an old key raises a KeyError
#: naming the new one (yacs' renamed keys), instead of a bare "Non-existent key".
RENAMED_KEYS = {
    "MODEL.CLUMP_EVAL": "TEST.CLUMP_EVAL",
    **{f"MODEL.CLUMP_EVAL.{k}": f"TEST.CLUMP_EVAL.{k}" for k in (
        "SCORE_THRESH", "MATCH", "IOU_THRESH", "DISTANCE_FACTOR", "CURVE_POINTS", "NUM_BINS",
        "BIN_ATTRIBUTES", "BIN_EDGES", "PLOTS")},
    "INFERENCE.SCORE_THRESH": "TEST.CLUMP_EVAL.SCORE_THRESH",
}


def _register_renamed_keys(cfg: CN) -> None:
    for old, new in RENAMED_KEYS.items():
        if not cfg.key_is_renamed(old):  # add_clump_config may run twice on one cfg
            cfg.register_renamed_key(old, new, "evaluation settings live under TEST, and the "
                                     "catalogue keeps detections at the operating point "
                                     "(see clump_d2/config.py).")

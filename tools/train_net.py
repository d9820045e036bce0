#!/usr/bin/env python
"""Train or evaluate a clump detector.

    python tools/train_net.py --config-file configs/quickstart.yaml [KEY VALUE ...]
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file ... --num-gpus 8
    python tools/train_net.py --model sdss_lite0 --eval-only   # a model-zoo model by name
"""
import clump_d2  # noqa: F401  (fills detectron2 0.6's gaps before detectron2 is used)
import clump_d2.data  # noqa: F401  (registers the clump datasets)
import clump_d2.modeling  # noqa: F401  (registers the Zoobot backbones)
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from clump_d2.engine import (
    ClumpTrainer,
    add_model_argument,
    apply_model_argument,
    build_config,
    build_model_for_inference,
    check_launch_args,
    prepare_datasets,
)


def setup(args):
    cfg = build_config(args.config_file, args.opts)
    default_setup(cfg, args)
    # default_setup configures detectron2's and fvcore's loggers only; ours log too.
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="clump_d2")
    return cfg


def main(args):
    cfg = setup(args)
    prepare_datasets(cfg)
    if args.eval_only:
        model = build_model_for_inference(cfg, resume=args.resume)
        results = ClumpTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = ClumpTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    parser = default_argument_parser()
    add_model_argument(parser)
    args = parser.parse_args()
    apply_model_argument(args)
    print("Command Line Args:", args)
    check_launch_args(args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )

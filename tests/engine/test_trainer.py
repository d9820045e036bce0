"""ClumpTrainer's checkpoints: saved with a checksum that resuming verifies, for the model and
everything resumed with it (the iteration, the scheduler's state), and resumable after a kill
left ``last_checkpoint`` empty."""
from pathlib import Path

import torch

from clump_d2.engine import ClumpTrainer, build_config

REPO = Path(__file__).resolve().parents[2]


def test_training_checkpoints_resume_verified_even_with_empty_last_checkpoint(
        tmp_path, tiny_synthetic, tiny_model_opts):
    opts = tiny_model_opts(tmp_path) + ["SOLVER.MAX_ITER", "1", "SOLVER.CHECKPOINT_PERIOD", "1",
                                        "DATASETS.TEST", "()"]  # no evaluation: not tested here
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), opts)
    trainer = ClumpTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert not list(tmp_path.glob(".*.tmp-*"))  # every write was renamed into place
    final = trainer.model.state_dict()

    for tag in ("model_final.pth", ""):  # "": a kill while the tag was being written
        (tmp_path / "last_checkpoint").write_text(tag)
        again = ClumpTrainer(cfg)
        again.resume_or_load(resume=True)
        assert again.checkpointer.last_load["checksum"] == "verified"
        assert again.checkpointer.last_load["missing"] == 0
        assert again.start_iter == 1  # model_final holds iteration 0
        assert again.scheduler.last_epoch == trainer.scheduler.last_epoch
        for key, value in again.model.state_dict().items():
            assert torch.equal(value, final[key]), key

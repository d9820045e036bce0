"""From a trained model to a clump catalogue: batch prediction over galaxy catalogues
(:mod:`.predict`), post-processing (:mod:`.postprocess`), sky coordinates (:mod:`.sky`),
pictures (:mod:`.visualize`) and model export (:mod:`.export`)."""
from .catalogue import COLUMNS, galaxy_table, read_table, write_table
from .inputs import CatalogueColumns, load_records
from .postprocess import Detections, PostProcessConfig, postprocess, postprocess_uncut
from .predict import CataloguePredictor, build_inference_model, run_catalogue
from .sky import CentreScaleSky, WcsSky, build_sky_transform

__all__ = [
    "COLUMNS", "CatalogueColumns", "CataloguePredictor", "CentreScaleSky", "Detections",
    "PostProcessConfig", "WcsSky", "build_inference_model", "build_sky_transform",
    "galaxy_table", "load_records", "postprocess", "postprocess_uncut", "read_table",
    "run_catalogue", "write_table",
]

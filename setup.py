"""clump_d2: find giant star-forming clumps in galaxy images with Detectron2."""
from setuptools import find_packages, setup

setup(
    name="clump_d2",
    version="0.1.0",
    description="Faster R-CNN clump finder for Galaxy Zoo: Clump Scout-style galaxy images",
    packages=find_packages(include=("clump_d2", "clump_d2.*")),
    # The model zoo's shipped models (config, weights, model card, selection function).
    package_data={"clump_d2.model_zoo": ["*/*.json", "*/*.yaml", "*/*.safetensors", "*/*.md",
                                         "*/*.csv"]},
    python_requires=">=3.10",
    # Runtime requirements live in requirements.txt; detectron2 comes from
    # scripts/install_detectron2.py (it is not on the registry under its own name).
    install_requires=["torch>=2.0", "torchvision", "numpy", "pillow", "scipy", "tqdm"],
)

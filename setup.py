"""lorat-plugin: LoRAT (ECCV 2024) as a plugin of the single-object tracking benchmark ecosystem."""
from pathlib import Path

from setuptools import find_packages, setup

# `trackers/` and `evaluation/` sit at the repository root (the plugin's top-level shape) but are installed only as
# sub-packages of lorat_plugin: the top-level names `trackers` and `evaluation` belong to other PyPI projects.
MAPPED = {"lorat_plugin.trackers": "trackers", "lorat_plugin.evaluation": "evaluation"}


def mapped_packages() -> list[str]:
    found = []
    for package, folder in MAPPED.items():
        found.append(package)
        found += [f"{package}.{sub}" for sub in find_packages(folder)]
    return found


setup(
    name="lorat-plugin",
    version="0.1.0",
    description="LoRAT visual object tracker for the got10k, VOT (TraX), LaSOT and TrackingNet toolkits",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["lorat_plugin", "lorat_plugin.*"]) + mapped_packages(),
    package_dir={"": ".", **MAPPED},
    # trackers/tracker_registry.ini links to the root file: `lorat vot-workspace` of an installed package reads it
    package_data={"lorat_plugin": ["assets/*", "assets/**/*", "configs/*.yaml", "app/static/*"],
                  "lorat_plugin.trackers": ["tracker_registry.ini"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=1.0",
        "numpy>=1.23",
        "scipy",
        "safetensors",
        "pyyaml",
        "tqdm",
        "pillow",
        "matplotlib",
        "omegaconf",
    ],
    extras_require={
        "got10k": ["got10k>=0.1.3"],
        # vot-toolkit 0.9.0 crashes in multistart/supervised/realtime experiments and attributee 0.1.10 breaks
        # `vot` on Python >= 3.11 (see README, "VOT"); vot-trax (not `trax`) provides the TraX module.
        "vot": ["vot-toolkit==0.7.4", "attributee==0.1.9", "vot-trax>=4.0.2"],
        "video": ["av", "imageio", "imageio-ffmpeg"],
        "train": ["pycocotools", "tensorboard"],
        "export": ["onnx", "onnxruntime"],
        "openvino": ["openvino", "onnx"],  # `lorat benchmark --compare openvino`; onnx: the exported file
        "baselines": ["opencv-contrib-python-headless", "got10k>=0.1.3"],  # got10k Tracker subclasses
        "demo": ["scikit-image", "opencv-contrib-python-headless", "got10k>=0.1.3", "av", "imageio", "imageio-ffmpeg"],
        "sam": ["segment-anything"],
        "app": ["starlette>=0.37", "uvicorn>=0.29"],  # `lorat app`
        # vermin: tests/test_python_floor.py; playwright drives Debian's chromium in tests/test_app.py (its own
        # browser download, `playwright install`, is never needed)
        "test": ["pytest", "pytest-timeout", "vermin", "playwright"],
    },
    entry_points={"console_scripts": ["lorat=lorat_plugin.cli:main"]},
)

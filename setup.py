"""Install sharpdarts: `pip install -e .[test]` (the Makefile does this inside .venv)."""
from setuptools import find_packages, setup

setup(
    name="sharpdarts",
    version="0.1.0",
    description="sharpDARTS and DARTS as a configuration-driven experiment registry",
    python_requires=">=3.11",
    packages=find_packages(include=["sharpdarts", "sharpdarts.*"]),
    package_data={"sharpdarts": ["reference/*.json", "reference/*.csv"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "gin-config==0.5.0",
        "numpy",
        "pandas",
        "graphviz",
        "matplotlib",
        "tqdm",
        "scikit-learn",
        "networkx",
        "ptflops==0.7.5",
        "tabulate",
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "pytest-timeout"]},
    entry_points={"console_scripts": ["sharpdarts=sharpdarts.face.cli:main"]},
)

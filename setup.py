import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithConfigs(build_py):
    """Ships the top-level configs/ folder (the source of truth) as the package data dapt/configs."""

    def run(self):
        super().run()
        src, dst = os.path.join(HERE, "configs"), os.path.join(self.build_lib, "dapt", "configs")
        if os.path.isdir(src) and not self.editable_mode:  # an editable install reads the checkout's configs/
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


# console commands: name -> module (each module has a main() returning the exit code)
COMMANDS = {
    "dapt-train": "dapt.cli:main",
    "dapt-quickstart": "dapt.tools.quickstart:main",
    "dapt-check-data": "dapt.tools.check_data:main",
    "dapt-generate-masks": "dapt.tools.generate_masks:main",
    "dapt-visualize-masks": "dapt.tools.visualize_masks:main",
    "dapt-visualize-attention": "dapt.tools.visualize_attention:cli",
    "dapt-parse-results": "dapt.tools.parse_results:main",
    "dapt-sweep": "dapt.tools.sweep:main",
    "dapt-tables": "dapt.tools.tables:main",
    "dapt-scenes-experiment": "dapt.tools.scenes_experiment:main",
}

setup(
    name="dapt",
    version="0.1.0",
    description="Prompt tuning of CLIP-like models, with DAPT (Decouple before Align) on top of any method",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["dapt", "dapt.*"]),
    include_package_data=True,
    package_data={"dapt": ["models/model_configs/*.json", "models/weights/*", "tools/paper_numbers.yaml"]},
    py_modules=[],
    cmdclass={"build_py": BuildWithConfigs},
    entry_points={"console_scripts": [f"{name} = {target}" for name, target in COMMANDS.items()]},
    install_requires=[
        # ranges that resolve to the wheels on the development machines; never above 2.14.1
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "open_clip_torch>=2.24",
        "yacs>=0.1.8",
        "numpy",
        "pillow",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.4", "transformers>=4.30", "submitit", "setuptools>=64", "wheel"],
        "segment": ["transformers>=4.30"],  # tools/generate_masks.py segment --backend clipseg
        "slurm": ["submitit"],  # tools/sweep.py --slurm
    },
)

from setuptools import find_packages, setup

setup(
    name="dapt",
    version="0.1.0",
    description="Prompt tuning of CLIP-like models, with DAPT (Decouple before Align) on top of any method",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["dapt", "dapt.*"]),
    include_package_data=True,
    package_data={"dapt": ["models/model_configs/*.json", "models/weights/*", "tools/paper_numbers.yaml"]},
    py_modules=[],
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
        "test": ["pytest>=7", "ruff>=0.4", "transformers>=4.30", "submitit"],
        "segment": ["transformers>=4.30"],  # tools/generate_masks.py segment --backend clipseg
        "slurm": ["submitit"],  # tools/sweep.py --slurm
    },
)

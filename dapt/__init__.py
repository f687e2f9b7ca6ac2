"""dapt: prompt tuning of CLIP-like models, with DAPT (Decouple before Align) on top of any method.

The names a researcher needs::

    import dapt
    cfg = dapt.get_cfg_default()          # every registered part's keys (Dassl names)
    dapt.train(cfg) / dapt.evaluate(cfg)  # what train.py runs
    dapt.PromptMethod, dapt.PromptTrainer, dapt.METHOD_REGISTRY, dapt.TRAINER_REGISTRY, dapt.DATASET_REGISTRY

Importing ``dapt`` (or any of its modules) registers the built-in methods, trainers, datasets and
their config nodes, so ``get_cfg_default`` always sees every key.
"""
__version__ = "0.1.0"

# the order matters: the trainers package imports the methods and the DAPT config node
import dapt.data.synthetic  # noqa: E402,F401  registers DATASET.SCENES
import dapt.trainers  # noqa: E402,F401  registers the built-in trainers, methods and their config nodes
from dapt.config import get_cfg_default  # noqa: E402
from dapt.data.registry import DATASET_REGISTRY  # noqa: E402
from dapt.launch import evaluate, train  # noqa: E402
from dapt.methods.base import PromptMethod  # noqa: E402
from dapt.trainers.base import PromptTrainer  # noqa: E402
from dapt.utils.registry import METHOD_REGISTRY, TRAINER_REGISTRY  # noqa: E402

__all__ = ["__version__", "PromptMethod", "PromptTrainer", "METHOD_REGISTRY", "TRAINER_REGISTRY",
           "DATASET_REGISTRY", "get_cfg_default", "train", "evaluate"]

"""The engine's config keys, with Dassl's names and default values.

Every key that the CoOp / MaPLe / PromptSRC / DAPT config files set exists here with the same
meaning, so their YAML files load unchanged. Methods and DAPT add their own nodes next to their
code (``add_coop_config``, ``add_dapt_config`` ...); ``get_cfg_default`` collects them all.
"""
from yacs.config import CfgNode as CN

_C = CN()

_C.VERSION = 1  # accepted for compatibility, ignored (config format version (Dassl))
_C.OUTPUT_DIR = "./output"  # where logs, checkpoints, tensorboard and the merged config go
_C.RESUME = ""  # directory to resume from (its <ModelName>/checkpoint file names the latest)
_C.SEED = -1  # random seed; negative = do not seed
_C.USE_CUDA = True  # use CUDA when it is available
_C.VERBOSE = True  # log the dataset and model summary

# ---------------------------------------------------------------- input
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)  # (height, width) fed to the image encoder
_C.INPUT.INTERPOLATION = "bilinear"  # resize interpolation: bilinear | bicubic | nearest
_C.INPUT.TRANSFORMS = ()  # train transform names, e.g. ("random_resized_crop", "random_flip", "normalize")
_C.INPUT.NO_TRANSFORM = False  # if True, images are only converted to tensors
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # normalisation mean (CLIP configs set CLIP's)
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]  # normalisation std (CLIP configs set CLIP's)
_C.INPUT.CROP_PADDING = 4  # padding for random_crop
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # scale range of random_resized_crop
_C.INPUT.CUTOUT_N = 1  # number of cutout holes
_C.INPUT.CUTOUT_LEN = 16  # cutout hole size in pixels
_C.INPUT.GN_MEAN = 0.0  # gaussian_noise mean
_C.INPUT.GN_STD = 0.15  # gaussian_noise std
_C.INPUT.RANDAUGMENT_N = 2  # accepted for compatibility, ignored (randaugment number of ops)
_C.INPUT.RANDAUGMENT_M = 10  # accepted for compatibility, ignored (randaugment magnitude)
_C.INPUT.COLORJITTER_B = 0.4  # colorjitter brightness
_C.INPUT.COLORJITTER_S = 0.4  # colorjitter saturation
_C.INPUT.COLORJITTER_C = 0.4  # colorjitter contrast
_C.INPUT.COLORJITTER_H = 0.1  # colorjitter hue
_C.INPUT.RGS_P = 0.2  # random_gray_scale probability
_C.INPUT.GB_P = 0.5  # gaussian_blur probability
_C.INPUT.GB_K = 21  # gaussian_blur kernel size

# ---------------------------------------------------------------- dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""  # folder that holds the dataset folders ($DATA)
_C.DATASET.NAME = ""  # registered dataset name, e.g. OxfordPets
_C.DATASET.SOURCE_DOMAINS = ()  # source domains (domain generalisation datasets)
_C.DATASET.TARGET_DOMAINS = ()  # accepted for compatibility, ignored (target domains (domain generalisation datasets))
_C.DATASET.NUM_LABELED = -1  # accepted for compatibility, ignored (labelled instances for semi-supervised datasets)
_C.DATASET.NUM_SHOTS = -1  # images per class for few-shot training; <= 0 uses the full train split
_C.DATASET.VAL_PERCENT = 0.1  # accepted for compatibility, ignored (validation share for semi-supervised datasets)
_C.DATASET.STL10_FOLD = -1  # accepted for compatibility, ignored (STL-10 fold; negative = none)
_C.DATASET.CIFAR_C_TYPE = ""  # accepted for compatibility, ignored (CIFAR-C corruption type)
_C.DATASET.CIFAR_C_LEVEL = 1  # accepted for compatibility, ignored (CIFAR-C corruption level)
_C.DATASET.ALL_AS_UNLABELED = False  # accepted for compatibility, ignored (use all data as unlabelled (SSL))
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new (base-to-novel: first / second half of the classes)
# data-efficient setting (dapt/data/selection.py): train on a class-balanced fraction of the training set
# Uniform (=Random) | GraNd | Uncertainty (=Margin) | Entropy | Margin | LeastConfidence | Submodular | Glister | Cal
_C.DATASET.SELECTION_METHOD = "Uniform"  # how the kept fraction is chosen (names above)
_C.DATASET.SELECTION_RATIO = 1.0  # fraction of every class kept, in (0, 1]; 1.0 = all data, no selection
_C.DATASET.SELECTION_BATCH_SIZE = 50  # batch size of the scoring pass over the training images

# ---------------------------------------------------------------- data loading
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4  # loader worker processes
_C.DATALOADER.K_TRANSFORMS = 1  # augmented views per training image
_C.DATALOADER.RETURN_IMG0 = False  # also return the un-augmented image
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"  # RandomSampler | SequentialSampler
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # training batch size
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0  # accepted for compatibility, ignored (domains per batch (RandomDomainSampler))
_C.DATALOADER.TRAIN_X.N_INS = 16  # accepted for compatibility, ignored (instances per class (RandomClassSampler))
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True  # unlabelled loader copies TRAIN_X
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"  # sampler of the unlabelled loader
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32  # unlabelled batch size
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0  # accepted for compatibility, ignored (domains per unlabelled batch)
_C.DATALOADER.TRAIN_U.N_INS = 16  # accepted for compatibility, ignored (instances per class, unlabelled)
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"  # evaluation sampler
_C.DATALOADER.TEST.BATCH_SIZE = 32  # evaluation batch size

# ---------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # optional weights to load into the whole model
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""  # CLIP architecture: "ViT-B/16" (MaPLe names) or an open_clip name
_C.MODEL.BACKBONE.PRETRAINED = True  # load pretrained CLIP weights (see MODEL.BACKBONE.WEIGHTS)
_C.MODEL.BACKBONE.WEIGHTS = ""  # local weight file, or a pretrained tag such as "openai"; "" = look in the cache folder
_C.MODEL.BACKBONE.CACHE_DIR = ""  # folder searched for weights; "" = $DAPT_CACHE or ~/.cache/dapt
_C.MODEL.TEXT_CHUNK_SIZE = 0  # run the prompted text tower over at most this many classes at a time, checkpointed (0 = off)
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""  # accepted for compatibility, ignored (Dassl's head)
_C.MODEL.HEAD.HIDDEN_LAYERS = ()  # accepted for compatibility, ignored (Dassl's head)
_C.MODEL.HEAD.ACTIVATION = "relu"  # accepted for compatibility, ignored (Dassl's head)
_C.MODEL.HEAD.BN = True  # accepted for compatibility, ignored (Dassl's head)
_C.MODEL.HEAD.DROPOUT = 0.0  # accepted for compatibility, ignored (Dassl's head)

# ---------------------------------------------------------------- optimisation
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"  # sgd | adam | adamw
_C.OPTIM.LR = 0.0003  # base learning rate
_C.OPTIM.WEIGHT_DECAY = 5e-4  # weight decay
_C.OPTIM.MOMENTUM = 0.9  # SGD momentum
_C.OPTIM.SGD_DAMPNING = 0  # SGD dampening (Dassl's spelling)
_C.OPTIM.SGD_NESTEROV = False  # SGD Nesterov momentum
_C.OPTIM.RMSPROP_ALPHA = 0.99  # RMSprop alpha
_C.OPTIM.ADAM_BETA1 = 0.9  # Adam beta1
_C.OPTIM.ADAM_BETA2 = 0.999  # Adam beta2
_C.OPTIM.STAGED_LR = False  # accepted for compatibility, ignored (separate lr for NEW_LAYERS)
_C.OPTIM.NEW_LAYERS = ()  # accepted for compatibility, ignored (parameter-name prefixes that get the full lr when STAGED_LR)
_C.OPTIM.BASE_LR_MULT = 0.1  # accepted for compatibility, ignored (lr multiplier of the other layers when STAGED_LR)
_C.OPTIM.LR_SCHEDULER = "single_step"  # single_step | multi_step | cosine
_C.OPTIM.STEPSIZE = (-1,)  # decay epoch(s) for single_step / multi_step; <= 0 = MAX_EPOCH
_C.OPTIM.GAMMA = 0.1  # decay factor for step schedules
_C.OPTIM.MAX_EPOCH = 10  # training epochs
_C.OPTIM.WARMUP_EPOCH = -1  # warm-up epochs; <= 0 = no warm-up
_C.OPTIM.WARMUP_TYPE = "linear"  # constant | linear
_C.OPTIM.WARMUP_CONS_LR = 1e-5  # lr during a constant warm-up
_C.OPTIM.WARMUP_MIN_LR = 1e-5  # start lr of a linear warm-up
_C.OPTIM.WARMUP_RECOUNT = True  # the schedule starts counting after the warm-up

# optimiser of the model that scores the training set for DATASET.SELECTION_METHOD: the same keys as
# OPTIM (same meaning), with the official release's values; MAX_EPOCH 0 = score with the untrained prompts
_C.OPTIM_SELECTION = _C.OPTIM.clone()
_C.OPTIM_SELECTION.STEPSIZE = tuple(list(_C.OPTIM.STEPSIZE))  # its step epochs (a copy: no YAML alias)
_C.OPTIM_SELECTION.STAGED_LR = False  # accepted for compatibility, ignored (as OPTIM.STAGED_LR)
_C.OPTIM_SELECTION.NEW_LAYERS = ()  # accepted for compatibility, ignored (as OPTIM.NEW_LAYERS)
_C.OPTIM_SELECTION.BASE_LR_MULT = 0.1  # accepted for compatibility, ignored (as OPTIM.BASE_LR_MULT)
_C.OPTIM_SELECTION.NAME = "sgd"  # optimiser of the selection pre-training
_C.OPTIM_SELECTION.LR = 0.0035  # its learning rate; also Glister's step size eta
_C.OPTIM_SELECTION.MAX_EPOCH = 0  # pre-training epochs on the full training set before scoring
_C.OPTIM_SELECTION.LR_SCHEDULER = "cosine"  # its schedule
_C.OPTIM_SELECTION.WARMUP_EPOCH = 1  # its warm-up epochs
_C.OPTIM_SELECTION.WARMUP_TYPE = "constant"  # its warm-up type
_C.OPTIM_SELECTION.WARMUP_CONS_LR = 1e-5  # its constant warm-up lr

# ---------------------------------------------------------------- training loop
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # save every N epochs (the last epoch is always saved); <= 0 = last only
_C.TRAIN.PRINT_FREQ = 10  # log every N batches (also where a NaN/inf loss is detected)
_C.TRAIN.MAX_SKIPPED_STEPS = 50  # fp16 loss scaling: stop after this many steps in a row skipped (inf/NaN grads)
_C.TRAIN.COUNT_ITER = "train_x"  # accepted for compatibility, ignored (which loader defines an epoch (Dassl key))

# ---------------------------------------------------------------- evaluation
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"  # Classification | MultiLabelClassification
_C.TEST.PER_CLASS_RESULT = False  # also report per-class accuracy
_C.TEST.COMPUTE_CMAT = False  # save the row-normalised confusion matrix (true x predicted) to OUTPUT_DIR/cmat.pt
_C.TEST.NO_TEST = False  # skip the final test
_C.TEST.SPLIT = "test"  # split used for the final test: test | val
_C.TEST.FINAL_MODEL = "last_step"  # last_step | best_val (reload the best validation model before testing)

# ---------------------------------------------------------------- trainer
_C.TRAINER = CN()
_C.TRAINER.NAME = ""  # registered trainer name, e.g. CoOp


def get_base_cfg() -> CN:
    """A fresh copy of the engine's defaults, without any method node."""
    return _C.clone()

"""Every command-line flag of kdseg, and the frozen records the entry points build from them.

The flags are grouped as the papers describe a run (data, protocol, method, model, optimisation,
run, test time, tools). `from_flags()` turns them into a RunConfig; `tool_from_flags()` reads what
kdseg.evaluate / predict / export need. This is the only module below the entry points that reads
FLAGS: everything else takes the records, so the library runs (and is tested) without flags.
Values are validated here, at parse time or in from_flags, before anything is written.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from kdseg import fs
from kdseg.data.datasets import DataConfig
from kdseg.data.splits import EVAL_IMAGES
from kdseg.data.weak import WeakConfig
from kdseg.data.shapes import ShapesConfig
from kdseg.engine.crf import DenseCRF
from kdseg.engine.evaluation import TestTime
from kdseg.engine.loop import WEIGHT_DECAY_ON
from kdseg.methods import INCREMENTAL_DECAYS, LOSS_TERMS, Method, customize, get_method
from kdseg.models.freezing import BATCH_NORM_MODES
from kdseg.models import resnet
from kdseg.models.segmenter import (CLASSIFIERS, INPUT_CONVENTIONS, UPSAMPLINGS, ModelConfig)

# The named values of --step, per command (a step index is taken by every command).
STEP_NAMES = {"all": ("kdseg.train",), "finished": ("kdseg.evaluate",),
              "last": ("kdseg.predict", "kdseg.export")}

# Data.
flags.DEFINE_string("dataset", "shapes", "Dataset reader: shapes (procedural, VOC layout), voc "
                    "(VOC 2012, + SBD via tools/prepare_voc.py), ade20k, cityscapes or msrc.")
flags.DEFINE_string("data_root", None, "Root of the dataset tree (VOCdevkit/VOC2012, "
                    "ADEChallengeData2016, the Cityscapes folder, MSRC_ObjCategImageDatabase_v2); "
                    "not needed for shapes.")
flags.DEFINE_string("cache_dir", fs.join("~", ".cache", "kdseg"),
                    "Where the shapes dataset and class-presence indexes are cached.")
flags.DEFINE_enum("data_format", "folder", ["folder", "tfds"],
                  "folder: read the dataset's files under --data_root; tfds: read the records "
                  "kdseg's TFDS builders wrote (tfds build kdseg_<dataset> "
                  "--imports=kdseg.datasets) under --tfds_data_dir. Same ids, splits and labels.")
flags.DEFINE_string("tfds_data_dir", None, "--data_format=tfds: the TFDS data directory "
                    "holding the records (any TF filesystem TFDS reaches, e.g. gs://).")
flags.DEFINE_string("tfds_name", None, "--data_format=tfds: the records dataset, if not kdseg's "
                    "builder of --dataset (kdseg_<dataset>); e.g. cityscapes/semantic_segmentation "
                    "(TFDS's own Cityscapes builder: gtFine labelIds, the same encoding).")
flags.DEFINE_integer("tfds_shuffle_buffer", 2048, "--data_format=tfds: images in the shuffle "
                     "buffer of training (records are read in sequence; the buffer holds encoded "
                     "images).", lower_bound=1)
flags.DEFINE_integer("shapes_image_size", 64, "shapes: image side in pixels.", lower_bound=8)
flags.DEFINE_integer("shapes_num_train", 1000, "shapes: number of training images.",
                     lower_bound=1)
flags.DEFINE_integer("shapes_num_val", 300, "shapes: number of validation images.",
                     lower_bound=1)
flags.DEFINE_integer("shapes_seed", 0, "shapes: seed of the generator.")

# Incremental protocol.
flags.DEFINE_string("task", "15-1", "Scenario: 19-1, 15-5, 15-1 (= 15-5s), 10-1, 10-10, 10-5-5, "
                    "100-50, 100-10, 50-50, 100-5, or a dataset's named scenario (cityscapes: "
                    "vehicles, non-driving, 11-2).")
flags.DEFINE_enum("setting", "overlapped", ["overlapped", "disjoint", "partition",
                                            "incremental-learning", "incremental-labeling"],
                  "Which images each step trains on and how old classes are labelled: MiB "
                  "overlapped / disjoint (§6.2.3), partition (ADE20K, Cityscapes §6.2.4-5), KD "
                  "paper incremental-learning (old classes keep their labels) / "
                  "incremental-labeling (§3). See kdseg/data/splits.py.")
flags.DEFINE_string("class_order", "dataset", "Order the classes are learned in: dataset (VOC: "
                    "alphabetical), alphabetical, frequency (training pixels, most first), "
                    "random[:SEED], a comma list of class names or ids, or @FILE.")
flags.DEFINE_string("split_files", "", "Train on the MiB / PLOP reference's image sets: its task "
                    "folder (e.g. MiB's data/voc/15-5s-ov) of train-<step>.npy image indices, "
                    "instead of kdseg's own filtering; python -m kdseg.show_splits shows where they "
                    "differ.")
flags.DEFINE_string("split_list", "", "The ordered image list --split_files indexes (MiB VOC: its "
                    "splits/train_aug.txt); default: the dataset's training list as kdseg reads "
                    "it (VOC: ImageSets/Segmentation/train_aug.txt; ADE20K: sorted file names, as "
                    "the reference).")
flags.DEFINE_enum("void_label", "background", ["background", "ignore"],
                  "What void (255) pixels of the training labels train as: background (the MiB "
                  "reference maps 255 to 0 in training at every step) or ignore (the KD paper's "
                  "code). Evaluation always ignores them.")
flags.DEFINE_integer("min_images_per_class", 50, "--setting=partition: images each class must "
                     "have in its own step (MiB paper: 50).")
flags.DEFINE_float("holdout_fraction", 0.0, "Hold out this fraction of each step's training "
                   "images (seeded) and evaluate on it, labelled as in training, instead of the "
                   "validation split: the MiB paper's hyper-parameter search uses 0.2.")
flags.register_validator("holdout_fraction", lambda value: 0.0 <= value < 1.0,
                         message="--holdout_fraction must be in [0, 1).")

# Method.
flags.DEFINE_list("method", ["mib"], "Method(s) to train, comma-separated (e.g. ft,mib); "
                  "methods sharing step 0 reuse one step-0 checkpoint. `python -m kdseg.methods` "
                  "lists them.")
# Changes to the named methods (default: each method's own setting). A changed method gets a
# derived name, e.g. --method=mib --freeze=first-two --distill=enc:100 -> mib+freeze=first-two+enc=100.
flags.DEFINE_enum("classification", None, ["ce", "unce", "bce", "bce-old", "bce-old-bg"],
                  "Supervised loss of steps >= 1: ce, unce (MiB unbiased CE), bce (LwF-MC), "
                  "bce-old / bce-old-bg (LwF-MC 'disjoint' variant: old channels' targets are the "
                  "old model's sigmoids; -bg keeps the ground-truth background).")
flags.DEFINE_list("distill", [], "Distillation terms name:weight to add or re-weight (0 removes): "
                  "kd, ukd, bce_distill, feature_mse, cls, enc, dec, spkd, spkd_avg, pod, "
                  "pod_logits (PLOP's Local POD of the features / of the logits).")
flags.DEFINE_enum("freeze", None, ["none", "encoder", "first-two"],
                  "Freeze from step 1 on: encoder (KD paper EF) or first-two (E2LF: conv1, conv2_x).")
flags.DEFINE_enum("init", None, ["random", "background"],
                  "Initialisation of new classifier heads (background: MiB Eq. 10-11).")
flags.DEFINE_string("regularizer", None, "Parameter regulariser name:weight (ewc:500, pi:500, "
                    "rw:100) or none.")
flags.DEFINE_enum("pixel_mean", None, ["all", "valid"],
                  "Reduction of the supervised loss: mean over all pixels (MiB reference) or "
                  "over non-ignored pixels (KD paper). Default: the method's.")
flags.DEFINE_enum("ce_pixels", None, ["new", "objects"],
                  "Steps >= 1: restrict the CE to new-class pixels or to object pixels (old + new, "
                  "no background), as options of the KD paper's code; needs the valid-pixel mean.")
flags.DEFINE_float("temperature", None, "Temperature T of the KD paper's L_cls-T.")
flags.DEFINE_float("kd_alpha", None, "alpha of MiB's (unbiased) KD targets softmax(alpha z_old).")
flags.DEFINE_enum("distill_pixels", None, ["all", "valid", "old", "old+bg"],
                  "Pixels L_cls averages over (KD paper code options); default old+bg, as the "
                  "paper's scripts (old_bgr).")
flags.DEFINE_enum("feature_normalisation", None, ["mean", "frobenius"],
                  "L_enc / L_dec: mean over all elements (default, the KD paper's code, weight "
                  "50) or the squared Frobenius norm per image of Eq. 6-7 (grows with the feature "
                  "size: give it a much smaller --distill weight).")
flags.DEFINE_enum("spkd_divide_by", None, ["batch", "batch_squared"],
                  "SPKD normalisation: 1/B as printed (Eq. 8) or 1/B^2 as in the original SPKD.")
flags.DEFINE_enum("incremental_decay", None, list(INCREMENTAL_DECAYS),
                  "Steps >= 1: the poly decay runs over the step (step: MiB, the KD paper's text, "
                  "its L_enc code) or over as many iterations as step 0 ran (first_step: the KD "
                  "code's FT, L_cls and EF scripts, whose rate stays near --lr_incremental). "
                  "Default: the method's.")

flags.DEFINE_enum("pseudo", None, ["none", "entropy"],
                  "Steps >= 1: relabel background pixels with the old model's prediction where "
                  "its entropy is below a per-class threshold (PLOP), or none. Default: the "
                  "method's.")
flags.DEFINE_float("pseudo_threshold", None, "PLOP: the floor of the per-class entropy "
                   "thresholds (the reference's --threshold, 0.001).")
flags.DEFINE_enum("pseudo_median", None, ["reference", "histogram"],
                  "PLOP: the per-class median of the entropy histogram as the reference code "
                  "computes it (reference) or the histogram's median (kdseg/losses/pseudo.py).")
flags.DEFINE_boolean("adaptive_factor", None, "PLOP: scale each image's CE by the share of its "
                     "background pixels that got a pseudo-label. Default: the method's.")

# Model.
flags.DEFINE_enum("backbone", "tiny", list(resnet.SPECS),
                  "Dilated backbone (kdseg/models/resnet.py). tiny: tests and the shapes demo; "
                  "resnet50/101: keras.applications' layout and weights; *_tv: torchvision's "
                  "layout (ReLU); *_iabn: the MiB reference's (leaky ReLU 0.01 after every BN, "
                  "In-place ABN weights); resnext101_iabn: In-place ABN's pre-activation "
                  "ResNeXt-101 (MiB paper, Cityscapes). PyTorch weights: "
                  "tools/convert_torch_weights.py.")
flags.DEFINE_integer("output_stride", 16, "Backbone output stride: 8 or 16.")
flags.register_validator("output_stride", lambda value: value in (8, 16),
                         message="--output_stride must be 8 or 16.")
flags.DEFINE_enum("head", "v3", ["v3", "v2", "classifier"],
                  "Segmentation head: v3 = DeepLab-v3 ASPP with image pooling (MiB paper); v2 = "
                  "DeepLab-v2, four dilated 3x3 classifiers summed (KD paper); classifier = a 1x1 "
                  "classifier on the backbone, no ASPP (MiB paper's point protocols). L_dec "
                  "compares ASPP branches: v2 or v3.")
flags.DEFINE_integer("head_channels", 256, "Channels of the DeepLab-v3 head.")
flags.DEFINE_string("backbone_weights", None,
                    "Local weight file loaded into the backbone before step 0: keras.applications' "
                    "ResNet50/ResNet101 ImageNet file (e.g. resnet101_weights_tf_dim_ordering_tf_"
                    "kernels_notop.h5) for resnet50/101, the .weights.h5 "
                    "tools/convert_torch_weights.py writes for the *_tv / *_iabn backbones, the "
                    "TF1 checkpoint deeplab_resnet_init.ckpt (DeepLab-v2 on MS-COCO, the KD "
                    "paper's start) for resnet101_deeplab. 'none': train from random weights "
                    "(required explicitly on a real dataset). Never downloaded; see "
                    "kdseg/models/pretrained.py.")
flags.DEFINE_enum("input_convention", "auto", ["auto"] + list(INPUT_CONVENTIONS),
                  "Input the backbone expects: imagenet (RGB, mean/std), caffe (BGR, mean "
                  "subtracted; keras.applications weights), deeplab (BGR minus DeepLab's Caffe "
                  "mean: DrSleep's reader of the COCO weights) or deeplab-rgb (RGB minus that "
                  "BGR-ordered mean, no channel swap: what the KD paper's code feeds them). auto: "
                  "caffe with keras.applications --backbone_weights, deeplab with "
                  "resnet101_deeplab, imagenet otherwise (PyTorch weights use it).")
flags.DEFINE_enum("classifier", "per_step", list(CLASSIFIERS),
                  "per_step: one zero-bias head per step, added when its classes arrive; full: "
                  "every class's output from step 0 (the future ones train as never present), "
                  "Glorot kernels and biases of the full width, as the KD paper's code.")
flags.DEFINE_enum("upsampling", "half_pixel", list(UPSAMPLINGS),
                  "Bilinear upsampling of the logits: half_pixel (tf.image.resize) or legacy "
                  "(TF1's resize_bilinear grid, as the KD paper's code).")
flags.DEFINE_bool("recompute", False, "Gradient checkpointing of the backbone (recompute each "
                  "residual block in the backward pass): less memory, slower steps.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras dtype policy; logits and losses stay float32. mixed_float16 (GPU) adds "
                  "dynamic loss scaling.")

# Optimisation (MiB paper §6.2.2 defaults).
flags.DEFINE_float("lr", 1e-2, "Learning rate of step 0.")
flags.DEFINE_float("lr_incremental", 1e-3, "Learning rate of steps >= 1.")
for _name in ("lr", "lr_incremental"):
  flags.register_validator(_name, lambda value: value > 0,
                           message=f"--{_name} must be positive (a negative rate ascends).")
# At least one pass: a step of zero epochs would be saved, and reported, as finished.
flags.DEFINE_integer("epochs", 30, "Epochs of step 0.", lower_bound=1)
flags.DEFINE_integer("epochs_incremental", 30, "Epochs of each step >= 1.", lower_bound=1)
flags.DEFINE_integer("batch_size", 24, "Global batch size (split across replicas).",
                     lower_bound=1)
flags.DEFINE_enum("supervision", "full", ["full", "points", "scribbles"],
                  "Training labels (MiB paper §5): full masks, or weak ones -- points or "
                  "scribbles, read with --weak_format from released files or simulated from the "
                  "full labels (kdseg/data/weak.py). Validation always uses full labels.")
flags.DEFINE_enum("weak_loss", "unl", ["pce", "pce-bkg", "unl", "img-lvl", "img-lvl+pce"],
                  "Supervised loss of weak labels, at every step (kdseg/losses/weak.py): pce "
                  "(Eq. 12), pce-bkg (unlabeled pixels as background), unl (MiB's unlabeled "
                  "prior, Eq. 13), img-lvl (Bearman et al. Eq. 2) and img-lvl+pce.")
flags.DEFINE_float("unl_gamma", 1.0, "gamma of Eq. 13: weight of the unlabeled pixels' term of "
                   "unl and pce-bkg (the paper gives no value).", lower_bound=0.0)
flags.DEFINE_enum("weak_format", "simulate",
                  ["simulate", "points-json", "scribblesup-xml", "sparse-png"],
                  "Origin of weak labels: simulate from the full labels, or read "
                  "--weak_annotations as What's the point JSON, ScribbleSup XML files or sparse "
                  "label PNGs.")
flags.DEFINE_string("weak_annotations", "", "The released weak annotations: a JSON file "
                    "(points-json) or a folder of <id>.xml / <id>.png files.")
flags.DEFINE_integer("points_per_region", 1, "Simulated points per connected class region.",
                     lower_bound=1)
flags.DEFINE_integer("point_radius", 0, "Points as discs of this radius (0: one pixel), kept "
                     "inside their region.", lower_bound=0)
flags.DEFINE_enum("weak_background", "auto", ["auto", "yes", "no"],
                  "Simulate points/scribbles on background regions too (auto: scribbles yes, as "
                  "ScribbleSup; points no, as What's the point).")
flags.DEFINE_integer("scribble_width", 3, "Width in pixels of scribbles (simulated or drawn "
                     "from ScribbleSup XML).", lower_bound=1)
flags.DEFINE_integer("weak_unlabeled_value", 255, "sparse-png: the label value of unannotated "
                     "pixels (255 in the converted ScribbleSup PNGs; 0 for ADE20K point maps).",
                     lower_bound=0, upper_bound=255)
flags.DEFINE_enum("augment", "resized_crop", ["resized_crop", "scale_crop"],
                  "Training augmentation (kdseg/data/augment.py): resized_crop = the MiB "
                  "reference's RandomResizedCrop (a window of U(min_scale, max_scale) x the image "
                  "area, aspect 3/4-4/3, resized to the crop; no padding); scale_crop = DeepLab's "
                  "scale, pad and crop as the KD paper's code runs it. Both flip.")
flags.DEFINE_integer("crop_size", 512, "Training crop side.", lower_bound=1)
flags.DEFINE_float("min_scale", 0.5, "Smallest random scale: area fraction of the window "
                   "(resized_crop) or side factor (scale_crop).")
flags.DEFINE_float("max_scale", 2.0, "Largest random scale (as --min_scale).")
flags.DEFINE_integer("iterations_per_class", 0,
                     "If > 0, each step runs this many iterations per class it learns (KD paper: "
                     "1000, background counted at step 0) instead of --epochs passes.")
flags.DEFINE_float("end_lr", 0.0, "Learning rate at the end of each step's poly decay (KD paper "
                   "1e-6, MiB 0).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_bool("nesterov", True, "Nesterov momentum, as the MiB and PLOP references' SGD; "
                  "--nonesterov: plain momentum, as the KD paper's TF1 MomentumOptimizer. Either "
                  "way the momentum buffer holds raw gradients and the current rate applies "
                  "(kdseg/engine/optimizer.py).")
flags.DEFINE_float("weight_decay", 1e-4, "Coupled L2 weight decay (PyTorch SGD semantics).")
flags.DEFINE_enum("weight_decay_on", "all", list(WEIGHT_DECAY_ON),
                  "Variables --weight_decay applies to: all trainable ones (the MiB reference) or "
                  "the convolution kernels only (the KD paper's code).")
flags.DEFINE_enum("batch_norm", "train", list(BATCH_NORM_MODES),
                  "train: BN normalises with batch statistics and updates its moving averages; "
                  "frozen: BN layers with trained statistics (the loaded backbone at step 0, "
                  "every layer from step 1 on) normalise with them and keep them, gamma/beta "
                  "still train (the KD paper's code). Without --backbone_weights step 0 trains "
                  "its statistics.")
flags.DEFINE_float("poly_power", 0.9, "Power of the polynomial learning-rate decay.")

# Run.
flags.DEFINE_string("run_dir", None, "Directory of this experiment (splits, checkpoints, logs, "
                    "results). Default: runs/<dataset>_<task>_<setting>.")
flags.DEFINE_string("step", "default", "Which step: an index (0, 1, ...) or the command's "
                    "name for a set of steps -- kdseg.train: all (every step in order, finished "
                    "ones skipped); kdseg.evaluate: finished (every finished step); "
                    "kdseg.predict / kdseg.export: last (the task's last step). Default: that "
                    "name (-1 is read as the default too). kdseg.train --step=t needs step t-1 "
                    "finished.")
flags.register_validator(
    "step", lambda value: value.lstrip("-").isdigit() and int(value) >= -1
    or value in ("default", *STEP_NAMES),
    message=f"--step is a step index (0, 1, ...) or one of {', '.join(sorted(STEP_NAMES))}.")
flags.DEFINE_integer("seed", 0, "Seed of shuffling, augmentation and initialisation.")
flags.DEFINE_list("seeds", [], "Run the experiment once per seed (e.g. 0,1,2), each in "
                  "<run_dir>/seed_<s>, and report mean ± std over them (<run_dir>/seeds.md; "
                  "tools/summarize.py reads such a directory too).")
flags.DEFINE_bool("deterministic", False, "Bit-reproducible runs: TensorFlow's op determinism "
                  "(tf.config.experimental.enable_op_determinism); the same command on the same "
                  "machine gives the same weights and results, also across a kill and resume. "
                  "Without it runs vary; its measured cost on CPU: none (docs/REPRODUCIBILITY.md).")
flags.DEFINE_float("checkpoint_minutes", 10.0, "Besides every epoch end, save the step in "
                   "progress this often (minutes; 0: epoch ends only); a resumed step goes on "
                   "with the batch after the last save.", lower_bound=0.0)
flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size: up to this many images of one "
                     "size predicted together (never padded: results do not depend on it; "
                     "larger is faster per image).", lower_bound=1)

# Test time (evaluation after each step, and kdseg.evaluate).
flags.DEFINE_integer("eval_crop", 0, "0: evaluate at full resolution (KD paper, Cityscapes); N: "
                     "resize the shorter side to N and center-crop N x N (MiB VOC/ADE: 512).",
                     lower_bound=0, upper_bound=4096)
flags.DEFINE_list("test_scales", ["1"], "Multi-scale test: image scale factors (e.g. "
                  "0.5,0.75,1,1.25,1.5).")
flags.DEFINE_bool("test_flip", False, "Also predict the horizontally flipped image.")
flags.DEFINE_enum("test_merge", "mean", ["mean", "max"], "Combine scales/flips by the mean or "
                  "the maximum of the softmax probabilities.")
flags.DEFINE_bool("test_crf", False, "Dense-CRF post-processing of the test-time probabilities "
                  "(kdseg/engine/crf.py).")
flags.DEFINE_integer("crf_iterations", 5, "Dense CRF: mean-field iterations.")
flags.DEFINE_float("crf_bilateral_xy", 80.0, "Dense CRF appearance kernel: position std (pixels).")
flags.DEFINE_float("crf_bilateral_rgb", 13.0, "Dense CRF appearance kernel: colour std (0..255).")
flags.DEFINE_float("crf_bilateral_weight", 10.0, "Dense CRF appearance kernel: weight.")
flags.DEFINE_float("crf_spatial_xy", 3.0, "Dense CRF smoothness kernel: position std (pixels).")
flags.DEFINE_float("crf_spatial_weight", 3.0, "Dense CRF smoothness kernel: weight.")
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multiworker"],
                  "tf.distribute strategy; auto = mirrored when several GPUs are visible; "
                  "multiworker reads the cluster from TF_CONFIG (kdseg/engine/distribute.py).")
flags.DEFINE_bool("jit_compile", False, "Compile the forward and backward pass of the train step "
                  "with XLA.")
flags.DEFINE_integer("log_every", 10, "TensorBoard scalars every N iterations.", lower_bound=1)
flags.DEFINE_integer("summary_images", 4, "Validation images shown (input | ground truth | "
                     "prediction) in TensorBoard after each step; 0 for none.")
flags.DEFINE_bool("background_in_old", True, "Count background among the old classes in mIoU old.")
flags.DEFINE_enum("eval_images", "seen", list(EVAL_IMAGES),
                  "Validation images of a step: seen (every image holding a class seen so far) "
                  "or no_future (every image holding no class of a later step: the KD paper's "
                  "val_1_<x> lists). The last step is the same either way on VOC.")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar and per-epoch lines.")

# Tools (kdseg.evaluate, kdseg.predict, kdseg.export): a finished run is read from --run_dir alone.
flags.DEFINE_enum("split", "val", ["val", "train"], "kdseg.evaluate: images to evaluate on.")
flags.DEFINE_string("checkpoint", None, "kdseg.evaluate: a step directory (holding final/) to "
                    "evaluate instead of the run's own; its network must match the run's.")
flags.DEFINE_list("inputs", [], "kdseg.predict: image files and/or folders of images.")
flags.DEFINE_string("output_dir", "predictions", "kdseg.predict: where the PNGs go.")
flags.DEFINE_string("manifest_dir", None, "kdseg.show_splits: also write each step's image set "
                    "(ids, digest, pixels per class) as <manifest_dir>/step_<t>.json.")
flags.DEFINE_float("overlay_alpha", 0.5, "kdseg.predict: opacity of the prediction in the "
                   "side-by-side view.")
flags.DEFINE_string("export_dir", None, "kdseg.export: directory of the SavedModel (must not "
                    "exist yet).")

# Flags that name a directory kdseg writes into: a file of that name is refused at parse time.
for _name in ("run_dir", "cache_dir", "output_dir", "manifest_dir", "tfds_data_dir"):
  flags.register_validator(
      _name, lambda value: not value or not fs.exists(value) or fs.isdir(value),
      message=f"--{_name} names a file, not a directory: give a folder (new or existing).")

FLAGS = flags.FLAGS


class FlagValueError(ValueError):
  """Flags that contradict each other or the machine (e.g. batch size vs replicas)."""


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
  """Which classes each step learns and from which images (data/tasks, orders, splits)."""
  task: str = "15-1"
  setting: str = "overlapped"
  class_order: str = "dataset"
  min_images_per_class: int = 50
  holdout_fraction: float = 0.0
  void_label: str = "background"
  split_files: str = ""     # a MiB/PLOP task folder of train-<step>.npy image indices
  split_list: str = ""      # the ordered image list those indices point into


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """Optimisation and augmentation of every step (step 0: lr/epochs; later: *_incremental)."""
  lr: float = 1e-2
  lr_incremental: float = 1e-3
  epochs: int = 30
  epochs_incremental: int = 30
  batch_size: int = 24
  augment: str = "resized_crop"
  crop_size: int = 512
  min_scale: float = 0.5
  max_scale: float = 2.0
  iterations_per_class: int = 0
  end_lr: float = 0.0
  momentum: float = 0.9
  weight_decay: float = 1e-4
  poly_power: float = 0.9
  nesterov: bool = True
  weight_decay_on: str = "all"
  batch_norm: str = "train"

  def shared_record(self) -> dict:
    """What the run records of the schedule shared by all steps. Options added later are
    recorded only when set, so run directories written before them stay valid; the optimizer is
    always recorded (it changed with parity round 3: directories without it trained with
    Keras' SGD, whose velocity holds the learning rate)."""
    optional = {"end_lr": self.end_lr, "iterations_per_class": self.iterations_per_class,
                "weight_decay_on": self.weight_decay_on != "all" and self.weight_decay_on,
                "batch_norm": self.batch_norm != "train" and self.batch_norm}
    return {"batch_size": self.batch_size, "augment": self.augment, "crop_size": self.crop_size,
            "min_scale": self.min_scale, "max_scale": self.max_scale, "momentum": self.momentum,
            "optimizer": "sgd-nesterov" if self.nesterov else "sgd",
            "weight_decay": self.weight_decay, "poly_power": self.poly_power,
            **{k: v for k, v in optional.items() if v}}


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
  """How a finished step is scored: batch, center crop (0: full size), test-time options."""
  batch_size: int = 8
  crop: int = 0
  test_time: TestTime = TestTime()
  background_in_old: bool = True
  summary_images: int = 4
  images: str = "seen"     # validation images of a step (kdseg.data.splits.EVAL_IMAGES)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One `python -m kdseg.train` run: everything it reads, as one frozen record."""
  data: DataConfig
  protocol: ProtocolConfig
  model: ModelConfig
  schedule: ScheduleConfig
  evaluation: EvaluationConfig
  methods: tuple[Method, ...]
  run_dir: str
  backbone_weights: str | None = None   # None: random weights
  step: int = -1
  seed: int = 0
  strategy: str = "auto"
  precision: str = "float32"
  jit_compile: bool = False
  log_every: int = 10
  verbose: int = 1
  checkpoint_seconds: float = 600.0   # save a step in progress this often (and at epoch ends)
  flags_text: str = ""   # the resolved flags, recorded beside each method's results
  weak: WeakConfig = WeakConfig()     # full or weak (points, scribbles) training labels
  deterministic: bool = False         # TensorFlow op determinism (--deterministic)
  seeds: tuple[int, ...] = ()         # --seeds: one run per seed in <run_dir>/seed_<s>
  # --backbone_weights=none: random weights on purpose (on a real dataset, a step 0 without
  # weights is otherwise refused: kdseg.run.experiment.check_starting_weights).
  from_scratch: bool = False


@dataclasses.dataclass(frozen=True)
class ToolConfig:
  """What kdseg.evaluate / predict / export read: a finished run, one method, a step, and the
  evaluation options given on the command line (None: the run's recorded value)."""
  run_dir: str
  method: str
  step: int
  evaluation: EvaluationConfig
  given: tuple[str, ...]           # evaluation fields set on the command line
  data_root: str | None = None      # another location of the run's dataset
  cache_dir: str | None = None
  precision: str = "float32"
  verbose: int = 1


def data_config() -> DataConfig:
  shapes = ShapesConfig(image_size=FLAGS.shapes_image_size, num_train=FLAGS.shapes_num_train,
                        num_val=FLAGS.shapes_num_val, seed=FLAGS.shapes_seed)
  return DataConfig(FLAGS.dataset, FLAGS.data_root, fs.absolute(FLAGS.cache_dir), shapes,
                    FLAGS.data_format,
                    fs.absolute(FLAGS.tfds_data_dir) if FLAGS.tfds_data_dir else None,
                    FLAGS.tfds_name, FLAGS.tfds_shuffle_buffer)


def resolve_methods() -> tuple[Method, ...]:
  """The --method records, changed by the method flags (--distill, --freeze, ...)."""
  return tuple(customize(get_method(name), classification=FLAGS.classification,
                         distill=FLAGS.distill, freeze=FLAGS.freeze, init=FLAGS.init,
                         regularizer=FLAGS.regularizer, pixel_mean=FLAGS.pixel_mean,
                         temperature=FLAGS.temperature, kd_alpha=FLAGS.kd_alpha,
                         distill_pixels=FLAGS.distill_pixels,
                         spkd_divide_by=FLAGS.spkd_divide_by, ce_pixels=FLAGS.ce_pixels,
                         feature_normalisation=FLAGS.feature_normalisation,
                         incremental_decay=FLAGS.incremental_decay, pseudo=FLAGS.pseudo,
                         pseudo_threshold=FLAGS.pseudo_threshold,
                         pseudo_median=FLAGS.pseudo_median,
                         adaptive_factor=FLAGS.adaptive_factor)
               for name in FLAGS.method)


def evaluation_config() -> EvaluationConfig:
  try:
    crf = None
    if FLAGS.test_crf:
      crf = DenseCRF(**{field.name: getattr(FLAGS, f"crf_{field.name}")
                        for field in dataclasses.fields(DenseCRF)})
    try:
      scales = tuple(float(scale) for scale in FLAGS.test_scales)
    except ValueError:
      raise ValueError(f"--test_scales={','.join(FLAGS.test_scales)}: give numbers, e.g. "
                       "0.5,0.75,1,1.25,1.5.") from None
    test_time = TestTime(scales, FLAGS.test_flip, FLAGS.test_merge, crf)
  except ValueError as error:
    raise FlagValueError(str(error)) from None
  return EvaluationConfig(FLAGS.eval_batch_size, FLAGS.eval_crop, test_time,
                          FLAGS.background_in_old, FLAGS.summary_images, FLAGS.eval_images)


def backbone_weights_flag() -> str | None:
  """--backbone_weights: a file, or None for random weights (not given, or 'none')."""
  value = FLAGS.backbone_weights
  return None if not value or value.lower() == "none" else value


def input_convention(backbone_weights: str | None) -> str:
  """--input_convention, with auto resolved: what the weights were trained on."""
  if FLAGS.input_convention != "auto":
    return FLAGS.input_convention
  if FLAGS.backbone in resnet.TF1_BACKBONES:
    return "deeplab"
  keras_weights = backbone_weights and FLAGS.backbone not in resnet.TORCH_BACKBONES
  return "caffe" if keras_weights else "imagenet"


def check_classifier(model: ModelConfig, methods: tuple[Method, ...]) -> None:
  """--classifier=full has every class's output from step 0: supervised and distillation terms
  that treat the channels beyond the old classes as the step's new ones (MiB's unbiased CE and
  KD, LwF's KD, LwF-MC's BCE) and the background-based init of a new head do not apply."""
  if model.classifier != "full":
    return
  for method in methods:
    unsuited = [t.loss for t in method.distillation if t.loss not in FULL_CLASSIFIER_TERMS]
    if method.classification != "ce" or unsuited or method.init != "random":
      what = (f"its {method.classification} loss" if method.classification != "ce" else
              f"its {unsuited[0]} term" if unsuited else f"--init={method.init}")
      raise FlagValueError(
          f"--classifier=full (every output from step 0, the KD paper's network) does not suit "
          f"--method={method.name}: {what} reads the channels after the old classes as the "
          "step's new ones. Use it with CE and the KD paper's terms (cls, enc, dec, spkd, "
          "spkd_avg), or --classifier=per_step.")


# Distillation terms that compare the old and new models' outputs whatever their widths.
FULL_CLASSIFIER_TERMS = ("cls", "enc", "dec", "spkd", "spkd_avg", "feature_mse")


def weak_config() -> WeakConfig:
  """--supervision and the --weak_* flags (refused without weak labels)."""
  weak = WeakConfig(FLAGS.supervision, FLAGS.weak_loss, FLAGS.unl_gamma, FLAGS.weak_format,
                    FLAGS.weak_annotations, FLAGS.points_per_region, FLAGS.point_radius,
                    FLAGS.weak_background, FLAGS.scribble_width, FLAGS.weak_unlabeled_value)
  if not weak.weak:
    weak_flags = [name for name in ("weak_format", "weak_annotations", "weak_loss", "unl_gamma")
                  if FLAGS[name].present]
    if weak_flags:
      raise FlagValueError(f"--{weak_flags[0]} applies to weak labels; add --supervision=points "
                           "or --supervision=scribbles, or drop it.")
  return weak


def seeds_flag() -> tuple[int, ...]:
  """--seeds as distinct integers (not with --seed)."""
  try:
    seeds = tuple(int(seed) for seed in FLAGS.seeds)
  except ValueError:
    raise FlagValueError(f"--seeds={','.join(FLAGS.seeds)}: expected integers, e.g. 0,1,2.") from None
  if seeds and FLAGS["seed"].present:
    raise FlagValueError("--seed and --seeds: give one (--seeds runs each seed in its own "
                         "<run_dir>/seed_<s>).")
  if len(set(seeds)) < len(seeds):
    raise FlagValueError(f"--seeds={','.join(FLAGS.seeds)} repeats a seed.")
  return seeds


def step_flag(command: str) -> int:
  """--step as a step index, or -1 for `command`'s named set (all / finished / last); a name
  another command owns is refused here, before anything is written."""
  value = FLAGS.step
  if value in STEP_NAMES and command not in STEP_NAMES[value]:
    takes = sorted(name for name, commands in STEP_NAMES.items() if command in commands)
    raise FlagValueError(f"--step={value} is not a step set of {command}: it takes a step "
                         f"index or {' / '.join(takes)}.")
  return -1 if value in ("default", "-1", *STEP_NAMES) else int(value)


def from_flags(command: str = "kdseg.train") -> RunConfig:
  """The RunConfig of kdseg.train; raises FlagValueError / MethodError on inconsistent flags."""
  if not FLAGS.method:
    raise FlagValueError("--method is empty: name at least one method "
                         "(python -m kdseg.methods lists them).")
  methods = resolve_methods()
  backbone_weights = backbone_weights_flag()
  model = ModelConfig(FLAGS.backbone, FLAGS.output_stride, FLAGS.head_channels, FLAGS.head,
                      input_convention=input_convention(backbone_weights),
                      recompute=FLAGS.recompute, classifier=FLAGS.classifier,
                      upsampling=FLAGS.upsampling)
  check_classifier(model, methods)
  # Every field of ScheduleConfig is set by the flag of its name.
  schedule = ScheduleConfig(**{field.name: getattr(FLAGS, field.name)
                               for field in dataclasses.fields(ScheduleConfig)})
  if not 0 < schedule.min_scale <= schedule.max_scale:
    raise FlagValueError(f"--min_scale={schedule.min_scale} and --max_scale={schedule.max_scale}:"
                         " need 0 < min_scale <= max_scale.")
  protocol = ProtocolConfig(
      task=FLAGS.task, setting=FLAGS.setting, class_order=FLAGS.class_order,
      min_images_per_class=FLAGS.min_images_per_class, holdout_fraction=FLAGS.holdout_fraction,
      void_label=FLAGS.void_label,
      split_files=fs.absolute(FLAGS.split_files) if FLAGS.split_files else "",
      split_list=fs.absolute(FLAGS.split_list) if FLAGS.split_list else "")
  if protocol.split_list and not protocol.split_files:
    raise FlagValueError("--split_list is the image list of --split_files; give both or neither.")
  run_dir = fs.absolute(FLAGS.run_dir or fs.join(
      "runs", f"{FLAGS.dataset}_{FLAGS.task}_{FLAGS.setting}"))
  if FLAGS.head == "classifier":
    with_aspp_terms = [m.name for m in methods
                       if any(LOSS_TERMS[t.loss].endpoint == "aspp" and t.endpoint is None
                              or t.endpoint == "aspp" for t in m.distillation)]
    if with_aspp_terms:
      raise FlagValueError(f"--method={with_aspp_terms[0]} compares ASPP branches (L_dec), which "
                           "--head=classifier does not have; use --head=v2 or v3.")
  weak = weak_config()
  seeds = seeds_flag()
  return RunConfig(
      data=data_config(), protocol=protocol, model=model, schedule=schedule,
      evaluation=evaluation_config(), methods=methods, run_dir=run_dir,
      backbone_weights=backbone_weights, step=step_flag(command), seed=FLAGS.seed,
      strategy=FLAGS.strategy, precision=FLAGS.precision, jit_compile=FLAGS.jit_compile,
      log_every=FLAGS.log_every, verbose=FLAGS.verbose,
      checkpoint_seconds=60.0 * FLAGS.checkpoint_minutes, flags_text=FLAGS.flags_into_string(),
      weak=weak, deterministic=FLAGS.deterministic, seeds=seeds,
      from_scratch=(FLAGS.backbone_weights or "").lower() == "none")


# Evaluation fields a tool may override, by the flag that sets each.
_EVALUATION_FLAGS = {"batch_size": "eval_batch_size", "crop": "eval_crop",
                     "background_in_old": "background_in_old", "images": "eval_images"}


def tool_from_flags(command: str) -> ToolConfig:
  """The ToolConfig of kdseg.evaluate / predict / export (`command` names it in errors)."""
  if not FLAGS.run_dir:
    raise FlagValueError(f"{command} needs --run_dir: the directory of a finished run.")
  if len(FLAGS.method) != 1:
    raise FlagValueError(f"--method={','.join(FLAGS.method)}: {command} takes one method (the "
                         "name of its folder in the run directory, e.g. mib or "
                         "mib+freeze=encoder).")
  given = tuple(field for field, flag in _EVALUATION_FLAGS.items() if FLAGS[flag].present)
  return ToolConfig(fs.absolute(FLAGS.run_dir), FLAGS.method[0], step_flag(command),
                    evaluation_config(), given,
                    FLAGS.data_root if FLAGS["data_root"].present else None,
                    (fs.absolute(FLAGS.cache_dir) if FLAGS["cache_dir"].present
                     else None), FLAGS.precision, FLAGS.verbose)

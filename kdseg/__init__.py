"""kdseg: class-incremental semantic segmentation (MiB and KD papers) in TensorFlow/Keras."""
import os

# oneDNN made a train step ~3.5x faster on the project's CPUs and provides the native dilated
# convolution kernels used by kdseg.models.layers.AtrousConv2D. Effective only when kdseg is
# imported before TensorFlow; an explicit setting by the user wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

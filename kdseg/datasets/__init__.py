"""TensorFlow Datasets builders of kdseg's datasets (importing this registers them with TFDS):
kdseg_shapes, kdseg_voc, kdseg_ade20k, kdseg_cityscapes, kdseg_msrc. See builders.py."""
from kdseg.datasets.builders import (BUILDERS, KdsegAde20k, KdsegCityscapes,  # noqa: F401
                                     KdsegMsrc, KdsegShapes, KdsegVoc, prepare,
                                     shapes_builder_config)

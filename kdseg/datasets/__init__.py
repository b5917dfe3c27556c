"""TensorFlow Datasets builders of kdseg's datasets (importing this registers them with TFDS):
kdseg_shapes, kdseg_voc, kdseg_ade20k, kdseg_cityscapes, kdseg_msrc; they live in
kdseg/data/builders.py, beside the readers they wrap. This package is what `tfds build
--imports=kdseg.datasets` and `python -m kdseg.datasets` name."""
from kdseg.data.builders import (BUILDERS, KdsegAde20k, KdsegCityscapes,  # noqa: F401
                                 KdsegMsrc, KdsegShapes, KdsegVoc, prepare,
                                 shapes_builder_config)

"""Values every layer shares: the ignore label and the input normalisation.

Kept at the bottom of the import graph so losses, metrics, models and the data layer use them
without importing each other.
"""
IGNORE_LABEL = 255   # label maps: 0 = background, 255 = ignored (void borders, unseen classes)
# Weak supervision (points, scribbles): a pixel inside the image that no annotation covers. It is
# not void: the unlabeled-prior loss (MiB paper Eq. 13) trains on it. No dataset has 254 classes.
UNLABELED = 254

# ImageNet statistics on 0..255 RGB (the MiB reference normalises [0, 1] images with
# mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225): the same map).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

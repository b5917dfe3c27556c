"""kdseg.predict's inputs: distinct output names, image modes, oversized images (the command
itself runs on a trained step in test_train.py)."""
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from kdseg import predict


class OutputNamesTest(tf.test.TestCase):

  def test_every_input_gets_its_own_outputs(self):
    self.assertEqual(predict.output_names(["d/a.jpg", "d/b.png"]), ["a", "b"])
    # Same stem, other extension; same name in two folders; a stem equal to another's side view.
    self.assertEqual(predict.output_names(["d/a.jpg", "d/a.png"]), ["a_jpg", "a_png"])
    self.assertEqual(predict.output_names(["d1/img.jpg", "d2/img.jpg", "d1/x.jpg"]),
                     ["d1_img_jpg", "d2_img_jpg", "x"])
    self.assertEqual(predict.output_names(["d/b.jpg", "d/b_side.jpg"]), ["b_jpg", "b_side_jpg"])
    names = predict.output_names(["d/img.jpg", "d/img.jpg"])   # the same file twice
    self.assertLen(set(names), 2)
    outputs = [f"{n}{suffix}" for n in predict.output_names(
        ["a/x.png", "b/x.png", "a/x.jpg", "a/x_side.png", "a/x_png.png"]) for suffix in ("", "_side")]
    self.assertLen(set(outputs), len(outputs))


class ReadImageTest(tf.test.TestCase):

  def test_sixteen_bit_grey_is_scaled_not_clipped(self):
    path = os.path.join(self.get_temp_dir(), "depth.png")
    Image.fromarray(np.array([[0, 257, 65535], [32896, 514, 1000]], np.uint16)).save(path)
    image = predict.read_image(path)
    self.assertEqual((image.shape, image.dtype), ((2, 3, 3), np.uint8))
    self.assertAllEqual(image[..., 0], [[0, 1, 255], [128, 2, 4]])
    self.assertAllEqual(image[..., 0], image[..., 2])

  def test_unsupported_or_oversized_images_are_refused_by_name(self):
    wide = os.path.join(self.get_temp_dir(), "wide.png")
    Image.new("1", (9000, 8000)).save(wide)   # 72 Mpx in a few kB: never decoded
    with self.assertRaisesRegex(predict.InputError, r"wide.png is 9000 x 8000 pixels.*downscale"):
      predict.read_image(wide)
    deep = os.path.join(self.get_temp_dir(), "deep.tif")
    Image.fromarray(np.array([[1, 2]], np.int32), mode="I").save(deep)
    with self.assertRaisesRegex(predict.InputError, r"deep.tif holds 32-bit integer pixels"):
      predict.read_image(deep)
    broken = os.path.join(self.get_temp_dir(), "broken.jpg")
    with open(broken, "wb") as out:
      out.write(b"\xff\xd8\xff not really")
    with self.assertRaisesRegex(predict.InputError, "broken.jpg is not a readable image"):
      predict.read_image(broken)


if __name__ == "__main__":
  tf.test.main()

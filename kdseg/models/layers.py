"""Small layers shared by the backbones and heads."""
from __future__ import annotations

from keras import layers
import tensorflow as tf


class AtrousConv2D(layers.Conv2D):
  """keras Conv2D whose dilation runs as tf.nn.conv2d(dilations=...).

  Keras lowers dilated convolutions to space-to-batch + convolution, which pads small feature maps
  to multiples of the rate: at rate 18 on a 4x4 map a train step of this layer took 32.6 ms
  against 1.8 ms for the native (oneDNN) dilated kernel. Same variables, same results.
  """

  def convolution_op(self, inputs, kernel):
    return tf.nn.conv2d(inputs, kernel, strides=list(self.strides),
                        padding=self.padding.upper(), dilations=list(self.dilation_rate))

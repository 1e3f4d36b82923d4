"""Where does the network look? Gradient saliency, Grad-CAM and their sanity check.

Chapter 11 ("Can we trust the classifier?") draws two kinds of map over an image:

- the *gradient saliency* of Simonyan et al. (2014): how much the class score
  changes when one pixel changes, ``|d score_c / d x|`` (largest over the three
  colour channels);
- *Grad-CAM* (Selvaraju et al., 2017): the feature maps ``A^k`` of a convolutional
  layer, weighted by the mean gradient of the class score over each map,
  ``relu(sum_k alpha_k A^k)`` with ``alpha_k = mean_ij d score_c / d A^k_ij``,
  enlarged to the image's size.

A map can look convincing and still say nothing about the trained network: edge
detectors draw edges whatever the weights. Adebayo et al. (2018) therefore ask that
a map change when the learned weights are replaced by random ones;
:func:`randomized_copy` makes that network and :func:`rank_correlation` measures
how alike two maps are.

The class score is the logit, before the output head: for a model that ends in
a probability head (the seed CNN's softmax) the layer before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial.data import to_unit_float
from cifar_tutorial.models import outputs_logits

__all__ = [
    "conv_layer_names",
    "gradient_saliency",
    "grad_cam",
    "randomized_copy",
    "rank_correlation",
]


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the ``Conv2D`` layers of ``model``, input first (chapter 11).

    Parameters
    ----------
    model : keras.Model
        A built model.

    Returns
    -------
    list of str
        The layer names; :func:`grad_cam` uses the last one by default.
    """
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _extractor(model: keras.Model, layer_name: str | None = None) -> keras.Model:
    """A model from the input of ``model`` to its logits, or to ``[output of layer_name, logits]``.

    The logits are the model's output when it ends in logits. When it ends in a
    softmax, they are what that softmax is applied to: the input of a probability
    head (:class:`~cifar_tutorial.models.OutputNormalization`), or the value of a
    last ``Dense`` layer before its activation (``Dense(10, activation="softmax")``,
    as chapter 7 writes the seed CNN). A functional model is cut at its own graph, as
    keras.io's Grad-CAM example does; a ``Sequential`` model is chained again layer by
    layer first, since a loaded one may hold several call graphs and only a fresh
    chain links the layer to the logits.
    """
    logits_out = outputs_logits(model)
    last = model.layers[-1]
    body = model.layers if logits_out else model.layers[:-1]
    if layer_name is not None and layer_name not in [layer.name for layer in body]:
        raise ValueError(f"model {model.name!r} has no layer {layer_name!r} before its logits; "
                         f"its convolutions are {', '.join(conv_layer_names(model)) or 'none'}")
    if isinstance(model, keras.Sequential):
        inputs = keras.Input(tuple(model.inputs[0].shape[1:]))
        x, outputs = inputs, {}
        for layer in body:
            x = outputs[layer.name] = layer(x)
    else:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        x = model.outputs[0] if logits_out else last.input
        outputs = {layer_name: model.get_layer(layer_name).output} if layer_name else {}
    logits = x if logits_out else _before_softmax(last, x)
    if layer_name is None:
        return keras.Model(inputs, logits)
    return keras.Model(inputs, [outputs[layer_name], logits])


def _before_softmax(last: keras.layers.Layer, x):
    """The logits that ``last``, a model's probability-producing last layer, turns into
    probabilities, given its input ``x``."""
    if isinstance(last, keras.layers.Dense):  # the layer's own z = x W + b, before its softmax
        z = keras.ops.matmul(x, last.kernel)
        return z + last.bias if last.use_bias else z
    return x  # a head without weights (OutputNormalization): its input is the logits


def _unit_images(images: np.ndarray) -> tf.Tensor:
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (n, h, w, c), got shape {x.shape}")
    return tf.convert_to_tensor(to_unit_float(x))


def _picked(scores: tf.Tensor, classes: np.ndarray | None) -> tuple[tf.Tensor, np.ndarray]:
    """The score of each image's class (the predicted one when ``classes`` is None)."""
    chosen = np.argmax(scores.numpy(), axis=-1) if classes is None else np.asarray(classes)
    if chosen.shape != (scores.shape[0],):
        raise ValueError(f"need one class per image: {scores.shape[0]} images, "
                         f"classes of shape {chosen.shape}")
    index = tf.constant(chosen.astype(np.int32))
    return tf.gather(scores, index, axis=1, batch_dims=1), chosen


def gradient_saliency(
    model: keras.Model, images: np.ndarray, classes: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """``max_channel |d score_c / d x|`` for each pixel (Simonyan et al., 2014; chapter 11).

    Parameters
    ----------
    model : keras.Model
        A model that takes images in ``[0, 1]``.
    images : numpy.ndarray
        ``(n, h, w, 3)`` uint8 (scaled by 1/255 here) or float images.
    classes : sequence of int, optional
        The class whose score is explained, one per image; by default the
        predicted class.

    Returns
    -------
    numpy.ndarray
        ``(n, h, w)`` float32 maps, each divided by its largest value (so in ``[0, 1]``).
    """
    x = _unit_images(images)
    scorer = _extractor(model)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score, _ = _picked(scorer(x, training=False), classes)
    grads = tape.gradient(score, x).numpy()
    maps = np.abs(grads).max(axis=-1)
    return _normalized(maps)


def _normalized(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)[:, None, None]
    return (maps / scale).astype(np.float32)


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    classes: Sequence[int] | np.ndarray | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM maps of one convolutional layer, enlarged to the images (Selvaraju et al., 2017; chapter 11).

    Parameters
    ----------
    model : keras.Model
        A model that takes images in ``[0, 1]``.
    images : numpy.ndarray
        ``(n, h, w, 3)`` uint8 or float images.
    classes : sequence of int, optional
        The class explained for each image; by default the predicted class.
    layer : str, optional
        The layer whose feature maps are weighted; by default the last ``Conv2D``
        (see :func:`conv_layer_names`). Any layer with ``(n, h', w', k)`` outputs
        works.

    Returns
    -------
    numpy.ndarray
        ``(n, h, w)`` float32 maps in ``[0, 1]`` (each divided by its largest
        value; all zero where no feature map speaks for the class), enlarged
        bilinearly from the layer's ``h' x w'``.
    """
    convs = conv_layer_names(model)
    if layer is None:
        if not convs:
            raise ValueError(f"model {model.name!r} has no Conv2D layer; name one with layer=")
        layer = convs[-1]
    extractor = _extractor(model, layer)
    x = _unit_images(images)
    with tf.GradientTape() as tape:
        features, scores = extractor(x, training=False)
        score, _ = _picked(scores, classes)
    grads = tape.gradient(score, features)
    if features.shape.rank != 4:
        raise ValueError(f"layer {layer!r} gives outputs of shape {features.shape}, "
                         "not (n, h, w, channels) feature maps")
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0]
    return _normalized(cam.numpy())


def randomized_copy(model: keras.Model, seed: int = 0) -> keras.Model:
    """A copy of ``model`` whose learned weights are redrawn at random (Adebayo et al., 2018; chapter 11).

    Every trainable weight tensor is replaced by independent normal draws with
    that tensor's own mean and standard deviation, so the scale of each layer is
    kept while what it learned is lost. Weights that are not trained (batch
    statistics, the fast net's whitening filters) are kept. ``model`` itself is
    not changed.

    Parameters
    ----------
    model : keras.Model
        A trained model.
    seed : int
        Seed of the draws.

    Returns
    -------
    keras.Model
        The randomized copy.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    for variable in copy.trainable_variables:
        values = np.asarray(variable.numpy(), dtype=np.float64)
        spread = values.std()
        if spread > 0:
            drawn = rng.normal(values.mean(), spread, size=values.shape)
            variable.assign(drawn.astype(variable.dtype))
    return copy


def _average_ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2.0)[inverse.ravel()]


def rank_correlation(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation between pairs of maps, one value per pair (chapter 11).

    Tied values (the zeros of a Grad-CAM map) share their average rank. 1 means
    the same ordering of pixels, 0 no relation; a pair in which one map is flat
    gives NaN.

    Parameters
    ----------
    maps_a, maps_b : numpy.ndarray
        ``(n, h, w)`` maps, or a single ``(h, w)`` pair.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` correlations (shape ``()`` for a single pair).
    """
    a, b = np.asarray(maps_a, dtype=np.float64), np.asarray(maps_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {a.shape} and {b.shape} cannot be compared")
    single = a.ndim == 2
    a, b = (a[None], b[None]) if single else (a, b)
    out = np.empty(len(a))
    for i, (u, v) in enumerate(zip(a.reshape(len(a), -1), b.reshape(len(b), -1))):
        ru, rv = _average_ranks(u), _average_ranks(v)
        ru, rv = ru - ru.mean(), rv - rv.mean()
        denominator = np.sqrt((ru * ru).sum() * (rv * rv).sum())
        out[i] = (ru * rv).sum() / denominator if denominator > 0 else np.nan
    return out[0] if single else out

"""tlbook: the helpers of *Everything Is a Mapping: Knowledge Transfer Between Deep Models*.

Every chapter uses it the same way::

    import tlbook as tl
    tl.setup()                                   # device, precision, mode, seed
    train = tl.load_dataset("mnist", "train")    # tensors on the device
    train, val = tl.validation_split(train, 5000)  # choose on val, report on test once
    model = tl.make_model("cnn")                 # body (named blocks) + head
    history = tl.fit(model, train, epochs=2)     # step function = the method's loss
    tl.report()                                  # what produced the stored outputs

Modules, one job each: ``runtime`` (device, precision, seeds, quick mode, the run record),
``data`` (the ImageData container, subsets, samplers), ``datasets`` (the book's datasets),
``domains`` (derived domains: inverted, rotated, colour blends), ``omniglot`` (Omniglot's files),
``files`` (dataset files, checksums), ``models`` (body/head networks), ``train`` (the loop),
``transfer`` (freezing, learning-rate groups), ``cache`` (trained models on disk, source models),
``stats`` (the sign test of paired comparisons), ``losses`` / ``meta`` / ``adapt`` / ``fusion``
(reference implementations the chapters check their own lines against), ``plots``, ``widgets``
(interactive panels, live and in the static book).
Less common helpers stay in their modules (``tl.data.batches``, ``tl.cache.save_atomic``, ...).
"""
__version__ = "0.4.0"

from .cache import cached_model, load_model, save_model, source_model
from .data import ImageData, Sampler, class_subset, per_class_subset, random_split, random_subset, validation_split
from .datasets import DATASETS, load_dataset
from .domains import blend_with_photos, invert, rotate
from .losses import distillation_loss
from .models import BodyHeadNet, make_model, reset_head, wrap_model
from .plots import spread
from .stats import sign_test
from .runtime import device, is_quick, pick, precision, report, setup, stamp, timed
from .train import accuracy, cross_entropy_step, evaluate, fit, predict, random_translate
from .transfer import freeze, param_groups, trainable_blocks, unfreeze
from . import adapt, continual, fusion, meta, plots, text, transferability, widgets, zeroshot

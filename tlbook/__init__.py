"""tlbook: the helpers of *Everything Is a Mapping: Knowledge Transfer Between Deep Models*.

Every chapter uses it the same way::

    import tlbook as tl
    tl.setup()                                   # device, precision, mode, seed
    train = tl.load_dataset("mnist", "train")    # tensors on the device
    model = tl.make_model("cnn")                 # body (named blocks) + head
    history = tl.fit(model, train, epochs=2)     # step function = the method's loss
    tl.report()                                  # what produced the stored outputs

Modules, one job each: ``runtime`` (device, precision, seeds, quick mode), ``data`` (datasets as
device tensors, subsets), ``models`` (body/head networks), ``train`` (the loop), ``transfer``
(freezing, learning-rate groups), ``losses`` (reference losses of the book's methods), ``cache``
(trained models on disk), ``plots``, ``widgets`` (interactive panels, live and in the static book).
"""
__version__ = "0.1.0"

from .cache import cache_dir, cached_model, load_weights, save_atomic
from .data import ImageData, batches, class_subset, per_class_subset, random_split
from .datasets import DATASETS, blend_with_photos, invert, load_dataset, rotate
from .files import data_root
from .losses import distillation_loss
from .models import BodyHeadNet, make_model, reset_head
from .runtime import autocast, device, is_quick, pick, precision, report, seed_everything, setup
from .train import cross_entropy_step, evaluate, fit, make_optimizer, predict, random_translate
from .transfer import freeze, param_groups, resolve_blocks, trainable_blocks, unfreeze
from . import plots
from . import widgets

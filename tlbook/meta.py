"""Meta-learning plumbing: few-shot tasks as samplers, one evaluation protocol, and reference meta-learners.

A few-shot classification task (an *episode*) is ``W`` classes ("ways") with ``S`` labelled examples each
(the support set, "shots") and ``Q`` more per class to predict (the query set). :class:`Episodes` draws
batches of such tasks from an :class:`~tlbook.data.ImageData` on its device and :class:`Sinusoids` draws
the regression tasks of MAML's first experiment; both are samplers that ``tl.fit`` draws from.
:func:`evaluate` scores any few-shot predictor on the same seeded episodes. The references
(:func:`prototype_logits`, :func:`adapt`, :func:`maml_query_loss`, :func:`reptile_update`) are what the
chapter checks its own few lines against with ``torch.testing.assert_close``.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call

from .checks import positive_number, seed_value, whole_number
from .data import ImageData, Sampler, _generator
from .models import unknown_name_error
from .runtime import device as default_device

try:  # tqdm.auto draws a widget in Jupyter and text elsewhere
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def _interval(value, argument: str) -> tuple:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{argument} must be a pair (low, high) of numbers, got {value!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{argument} must be finite with low <= high, got {value!r}.")
    return low, high


def _labelled(data, argument: str = "data") -> torch.Tensor:
    if not isinstance(data, ImageData):
        raise TypeError(f"{argument} must be an ImageData (e.g. tl.load_dataset('omniglot', 'background')), got {type(data).__name__}.")
    if not getattr(data, "has_labels", True):
        raise ValueError(f"{argument} ({data.name}) has no labels; few-shot tasks are made of classes, so they need labelled data.")
    return data.labels


def _loss_precision(t: torch.Tensor) -> torch.Tensor:
    # Under autocast outputs come back in bf16/fp16; losses and distances are computed in float32.
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def rotations(data: ImageData, degrees=(0, 90, 180, 270)) -> ImageData:
    """Every (class, rotation) pair as a class of its own: ``K`` classes become ``K * len(degrees)``.

    Omniglot's characters are few for meta-training, so Santoro et al. (2016, "Meta-learning with
    memory-augmented neural networks") and Finn, Abbeel & Levine (2017, "Model-agnostic meta-learning for
    fast adaptation of deep networks") add each character turned by 90, 180 and 270 degrees as new classes.
    ``degrees``: distinct multiples of 90 (modulo 360); positive turns counterclockwise. Exact: ``torch.rot90``
    moves pixels, no interpolation. Images must be square unless every angle is a multiple of 180.

    Label layout (rotation-major): example ``i`` (label ``k``) turned by ``degrees[r]`` is row ``r * N + i`` of
    the result, with label ``r * K + k`` and class name ``f"{data.classes[k]}@{degrees[r]}"`` (e.g.
    ``'Latin/character01@90'``). So ``label % K`` is the original class and ``label // K`` the rotation.
    Returns images ``(len(degrees) * N, C, H, W)`` on ``data``'s device; extra columns are left out (they
    describe the unrotated images).
    """
    labels = _labelled(data)
    try:
        angles = [int(d) for d in degrees if isinstance(d, numbers.Real) and not isinstance(d, bool) and d % 90 == 0]
        valid = len(angles) == len(degrees) > 0
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"degrees must be a non-empty sequence of multiples of 90, got {degrees!r}.")
    turns = [(a // 90) % 4 for a in angles]  # counterclockwise quarter turns
    if len(set(turns)) != len(turns):
        raise ValueError(f"degrees must be distinct modulo 360 (each is one new class), got {degrees!r}.")
    height, width = data.shape[1:]
    if height != width and any(t % 2 for t in turns):
        raise ValueError(f"degrees {degrees!r} turn {data.name}'s {height}x{width} images by 90; that needs square images.")
    images = torch.cat([torch.rot90(data.images, t, dims=(2, 3)) for t in turns])
    k = data.num_classes
    new_labels = torch.cat([labels + r * k for r in range(len(turns))])
    classes = tuple(f"{name}@{a}" for a in angles for name in data.classes)
    return ImageData(images, new_labels, classes, name=f"{data.name}+rotations{tuple(angles)}")


class Episodes(Sampler):
    """Batches of few-shot classification tasks drawn from labelled data, on the data's device.

    Each task picks ``ways`` distinct classes, then ``shots + queries`` distinct examples of each: the
    first ``shots`` are its support set, the others its query set (so the two are disjoint). The classes
    get the labels ``0..ways-1`` in a random order per task, so a label means nothing across tasks
    (Vinyals et al. 2016, "Matching networks for one shot learning"; Finn et al. 2017). A batch is a few
    tensor operations on a padded ``(num_classes, max_count)`` table of example indices, so classes of
    unequal sizes work too.

    ``sample(generator)`` -> ``(support_images, support_labels, query_images, query_labels)``:
    ``(T, W*S, C, H, W)`` float32, ``(T, W*S)`` int64 in ``[0, W)``, ``(T, W*Q, C, H, W)``, ``(T, W*Q)``,
    with ``T = tasks_per_batch``. Rows are grouped by label: ``support_labels[t]`` is ``[0]*S + [1]*S +
    ... + [W-1]*S`` (queries likewise); which class hides behind label ``j`` is random per task.
    ``generator``: a CPU ``torch.Generator`` for CPU data, a CUDA one for CUDA data (as ``tl.fit`` makes it).
    ``ways``, ``shots``, ``queries``, ``tasks_per_batch``: ints >= 1; every class of ``data`` (labelled) needs
    ``shots + queries`` examples.
    """

    def __init__(self, data: ImageData, ways: int, shots: int, queries: int, tasks_per_batch: int = 1):
        labels = _labelled(data)
        self.ways = whole_number(ways, "ways")
        self.shots = whole_number(shots, "shots")
        self.queries = whole_number(queries, "queries")
        self.tasks_per_batch = whole_number(tasks_per_batch, "tasks_per_batch")
        if self.ways > data.num_classes:
            raise ValueError(f"ways={ways} but {data.name} has only {data.num_classes} classes; lower ways, "
                             "or add classes with tl.meta.rotations(data).")
        counts = torch.bincount(labels, minlength=data.num_classes)
        host_counts = counts.cpu()  # read once here, never while sampling
        need = self.shots + self.queries
        poor = (host_counts < need).nonzero().flatten().tolist()
        if poor:
            examples = ", ".join(f"{data.classes[k]!r} ({int(host_counts[k])})" for k in poor[:5])
            raise ValueError(
                f"{data.name}: each class needs shots + queries = {self.shots} + {self.queries} = {need} examples, "
                f"but {len(poor)} classes have fewer, e.g. {examples}. Lower shots or queries so that they sum "
                f"to at most {int(host_counts.min())}, or leave those classes out with tl.class_subset."
            )
        order = torch.argsort(labels, stable=True)  # example indices grouped by class
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
        table = torch.full((data.num_classes, int(host_counts.max())), -1, dtype=torch.long, device=labels.device)
        table[labels[order], rank] = order
        self.data, self.device = data, data.device
        self._table = table  # (num_classes, max_count): class k's examples, then -1 padding
        self._padding = table < 0

    def __repr__(self) -> str:
        return f"Episodes({self.data.name!r}, {self.ways}-way {self.shots}-shot, {self.queries} queries, {self.tasks_per_batch} tasks)"

    def indices(self, generator: torch.Generator) -> tuple:
        """Which examples a batch uses: ``(support_index (T, W*S), query_index (T, W*Q))`` int64 row numbers
        of ``data``, laid out as in :meth:`sample`, which draws exactly these from the same generator state."""
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        t, w, s, q = self.tasks_per_batch, self.ways, self.shots, self.queries
        num_classes, max_count = self._table.shape
        # Top-k of uniform keys is a uniform draw without replacement, in uniform random order: that
        # order is the label, so labels come out shuffled per task for free.
        class_keys = torch.rand(t, num_classes, generator=generator, device=generator.device).to(self.device)
        classes = class_keys.topk(w, dim=1).indices  # (T, W)
        example_keys = torch.rand(t, w, max_count, generator=generator, device=generator.device).to(self.device)
        example_keys = example_keys.masked_fill(self._padding[classes], -1.0)  # padding is never picked
        slots = example_keys.topk(s + q, dim=2).indices  # (T, W, S+Q) distinct slots per class
        chosen = self._table[classes].gather(2, slots)
        return chosen[:, :, :s].reshape(t, w * s), chosen[:, :, s:].reshape(t, w * q)

    def sample(self, generator: torch.Generator) -> tuple:
        """One batch of tasks: ``(support_images, support_labels, query_images, query_labels)`` (see class doc)."""
        support, query = self.indices(generator)
        labels = torch.arange(self.ways, device=self.device).repeat(self.tasks_per_batch, 1)  # (T, W)
        support_labels, query_labels = labels.repeat_interleave(self.shots, 1), labels.repeat_interleave(self.queries, 1)
        return self.data.images[support], support_labels, self.data.images[query], query_labels


def evaluate(predict, data: ImageData, ways: int, shots: int, queries: int = 15, episodes: int = 600,
             seed: int = 0, progress: bool = False) -> tuple:
    """Few-shot accuracy of ``predict`` on ``episodes`` seeded test tasks: ``(mean_accuracy, ci95)`` floats.

    The episodes are drawn one after another from a generator seeded by ``seed`` on ``data``'s device
    (as :class:`Episodes` with one task per batch), so every method evaluated with the same arguments on
    the same device meets exactly the same test tasks. ``ci95 = 1.96 * std / sqrt(episodes)`` over the
    per-episode accuracies (std with ``ddof=1``), the 95% interval the few-shot papers report.

    ``predict(support_images (W*S, C, H, W), support_labels (W*S,), query_images (W*Q, C, H, W))``
    returns scores ``(W*Q, W)``; the prediction is their argmax. ``predict`` is *not* run under
    ``torch.no_grad``: gradient-based methods (MAML, fine-tuning) adapt inside it; methods that need no
    gradients wrap their own body in ``torch.no_grad()`` and put their model in eval mode themselves.
    Accuracies stay on the device; the only host sync is at the end.
    """
    if not callable(predict):
        raise TypeError(f"predict must be a function (support_images, support_labels, query_images) -> scores, got {type(predict).__name__}.")
    episodes = whole_number(episodes, "episodes", minimum=2)  # a confidence interval needs two
    seed = seed_value(seed, "seed")
    sampler = Episodes(data, ways, shots, queries, tasks_per_batch=1)
    generator = _generator(seed, data.device)
    accuracies = torch.empty(episodes, device=data.device)
    steps = range(episodes)
    if progress and tqdm is not None:
        steps = tqdm(steps, desc=f"{ways}-way {shots}-shot", leave=False)
    for e in steps:
        support_images, support_labels, query_images, query_labels = (x[0] for x in sampler.sample(generator))
        scores = predict(support_images, support_labels, query_images)
        expected = (sampler.ways * sampler.queries, sampler.ways)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"predict must return scores of shape (ways * queries, ways) = {expected}, got {got}.")
        accuracies[e] = (scores.argmax(1).to(query_labels.device) == query_labels).float().mean()
    accuracies = accuracies.double().cpu()  # the one host sync
    return accuracies.mean().item(), 1.96 * accuracies.std().item() / math.sqrt(episodes)


class Sinusoids(Sampler):
    """Sine regression tasks ``y = A sin(x - phase)`` (Finn, Abbeel & Levine 2017, section 5.1 and appendix).

    Each task draws its amplitude ``A ~ U[0.1, 5.0]`` and phase ``~ U[0, pi]``; its inputs are
    ``x ~ U[-5, 5]``. ``sample(generator)`` -> ``(x_support (T, K, 1), y_support (T, K, 1), x_query (T, Q, 1),
    y_query (T, Q, 1))`` float32 on ``device``, with ``T = tasks_per_batch``, ``K = shots``, ``Q = queries``.
    The paper uses ``K`` = 5 or 10, one inner step of 0.01 on the MSE, 25 tasks per meta-batch and :func:`sinusoid_net`.

    ``tasks_per_batch``, ``shots``, ``queries``: ints >= 1; ``device``: where batches are made (default
    :func:`tlbook.runtime.device`); ``amplitude``, ``phase``, ``x_range``: ``(low, high)`` of the uniforms.
    """

    def __init__(self, tasks_per_batch: int = 25, shots: int = 10, queries: int = 10, device=None,
                 amplitude=(0.1, 5.0), phase=(0.0, math.pi), x_range=(-5.0, 5.0)):
        self.tasks_per_batch = whole_number(tasks_per_batch, "tasks_per_batch")
        self.shots = whole_number(shots, "shots")
        self.queries = whole_number(queries, "queries")
        self.amplitude = _interval(amplitude, "amplitude")
        self.phase = _interval(phase, "phase")
        self.x_range = _interval(x_range, "x_range")
        self.device = default_device() if device is None else torch.device(device)

    def __repr__(self) -> str:
        return f"Sinusoids({self.tasks_per_batch} tasks, {self.shots} shots, {self.queries} queries, device={self.device})"

    def _draw(self, generator: torch.Generator, n: int) -> tuple:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        k = self.shots
        u = torch.rand(n, 2 + k + self.queries, generator=generator, device=generator.device).to(self.device)
        amplitude = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * u[:, 0]
        phase = self.phase[0] + (self.phase[1] - self.phase[0]) * u[:, 1]
        x = (self.x_range[0] + (self.x_range[1] - self.x_range[0]) * u[:, 2:]).unsqueeze(2)  # (n, K+Q, 1)
        y = amplitude[:, None, None] * torch.sin(x - phase[:, None, None])
        return amplitude, phase, x[:, :k], y[:, :k], x[:, k:], y[:, k:]

    def sample(self, generator: torch.Generator) -> tuple:
        """One batch of tasks: ``(x_support, y_support, x_query, y_query)`` (see class doc)."""
        return self._draw(generator, self.tasks_per_batch)[2:]

    @classmethod
    def fixed_tasks(cls, n: int, shots: int, queries: int = 100, seed: int = 0, device=None,
                    amplitude=(0.1, 5.0), phase=(0.0, math.pi), x_range=(-5.0, 5.0)) -> dict:
        """A fixed test set of ``n`` tasks, the same for every method (and every device: drawn on the CPU).

        Returns ``{'amplitude' (n,), 'phase' (n,), 'x_support' (n, shots, 1), 'y_support', 'x_query'
        (n, queries, 1), 'y_query'}`` float32 on ``device``. Drawn from its own random stream (the seed plus
        a large offset), so it never replays a training batch drawn by ``tl.fit`` with the same seed.
        """
        seed = seed_value(seed, "seed")
        tasks = cls(whole_number(n, "n"), shots, queries, device, amplitude, phase, x_range)
        generator = torch.Generator().manual_seed(seed + _FIXED_TASKS_STREAM)
        keys = ("amplitude", "phase", "x_support", "y_support", "x_query", "y_query")
        return dict(zip(keys, tasks._draw(generator, tasks.tasks_per_batch)))


_FIXED_TASKS_STREAM = 2**31  # within the 32 bits of a seed that the CPU generator keeps


def sinusoid_net(hidden=(40, 40), seed: int = 0) -> nn.Sequential:
    """The sinusoid regressor of Finn et al. (2017): ``x (N, 1) -> y (N, 1)``, Linear-ReLU layers 1-40-40-1.

    Layers are named ``hidden1``, ``relu1``, ..., ``head``, so ANIL adapts ``names=['head']``. Seeded
    initialisation; the global RNG is left untouched.
    """
    widths = [whole_number(h, "hidden") for h in hidden]
    layers, d_in = OrderedDict(), 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, width in enumerate(widths, start=1):
            layers[f"hidden{i}"] = nn.Linear(d_in, width)
            layers[f"relu{i}"] = nn.ReLU()  # not in place: the inner loop differentiates through it twice
            d_in = width
        layers["head"] = nn.Linear(d_in, 1)
        return nn.Sequential(layers)


def prototype_logits(support_features: torch.Tensor, support_labels: torch.Tensor, query_features: torch.Tensor,
                     ways: int) -> torch.Tensor:
    """Prototypical Networks' logits: minus the squared Euclidean distance to each class mean.

    Snell, Swersky & Zemel (2017), "Prototypical networks for few-shot learning":
    ``c_k = mean{ f(x_i) : y_i = k }`` over the support set and ``logits[q, k] = -||f(x_q) - c_k||^2``, so
    ``softmax(logits)`` is their ``p(y = k | x_q)`` and cross-entropy on the logits their loss.

    ``support_features (S, D)``, ``support_labels (S,)`` int64 in ``[0, ways)`` (every class present: not
    checked, as that would read values back to the host), ``query_features (Q, D)`` -> logits ``(Q, W)``;
    or ``(T, S, D)``, ``(T, S)``, ``(T, Q, D)`` -> ``(T, Q, W)`` for ``T`` tasks at once. float32 for
    half-precision features (safe under autocast), else the features' dtype.
    """
    ways = whole_number(ways, "ways")
    s, y, q = support_features, support_labels, query_features
    if (s.ndim not in (2, 3) or q.ndim != s.ndim or tuple(y.shape) != tuple(s.shape[:-1])
            or q.shape[:-2] != s.shape[:-2] or q.shape[-1] != s.shape[-1]):
        raise ValueError(
            "expected support_features (S, D) or (T, S, D), support_labels (S,) or (T, S) and query_features "
            f"(Q, D) or (T, Q, D) with the same T and D; got shapes {tuple(s.shape)}, {tuple(y.shape)}, {tuple(q.shape)}."
        )
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise TypeError(f"support_labels must be integer class indices in [0, {ways}), got dtype {y.dtype}.")
    s, q = _loss_precision(s), _loss_precision(q)
    dtype = torch.promote_types(s.dtype, q.dtype)
    s, q = s.to(dtype), q.to(dtype)
    one_hot = (y.unsqueeze(-1) == torch.arange(ways, device=y.device)).to(dtype)  # (..., S, W)
    # Autocast would run this matmul in bf16/fp16; squared distances need the float32 means.
    with torch.autocast(device_type=s.device.type, enabled=False):
        prototypes = one_hot.transpose(-1, -2) @ s / one_hot.sum(-2).unsqueeze(-1)  # (..., W, D)
    return -(q.unsqueeze(-2) - prototypes.unsqueeze(-3)).pow(2).sum(-1)


def _check_params(model, params, names) -> list:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    if not isinstance(params, Mapping) or not all(isinstance(p, torch.Tensor) for p in params.values()):
        raise TypeError("params must be a dict name -> tensor, e.g. dict(model.named_parameters()).")
    parameters = [n for n, _ in model.named_parameters()]
    known = parameters + [n for n, _ in model.named_buffers()]
    for key in params:
        if key not in known:
            raise unknown_name_error("parameter", key, known)
    if names is None:  # buffers (BatchNorm statistics) may be passed, but are not adapted
        return [n for n in params if n in parameters]
    selected = []
    for name in [names] if isinstance(names, str) else names:  # parameter names or module prefixes ('head')
        matches = [n for n in params if n == name or n.startswith(name + ".")]
        if not matches:
            prefixes = {n.rsplit(".", i)[0]: None for n in params for i in range(n.count("."), -1, -1)}
            raise unknown_name_error("parameter", name, prefixes)
        selected += [n for n in matches if n not in selected]
    return selected


def adapt(model: nn.Module, params: dict, x, y, loss_fn, inner_lr: float, steps: int = 1,
          first_order: bool = False, names=None) -> dict:
    """MAML's inner loop: ``steps`` gradient steps on one task's support loss, as a function of ``params``.

    Finn, Abbeel & Levine (2017), "Model-agnostic meta-learning for fast adaptation of deep networks":
    ``phi = theta - alpha * grad_theta L(f_theta(x), y)``, repeated ``steps`` times. The second-order
    version keeps the graph (``create_graph=True``) so that the meta-gradient differentiates through the
    steps; ``first_order=True`` (FOMAML, same paper) treats each inner gradient as a constant, so
    ``d phi / d theta = I`` and the meta-gradient is the query gradient at ``phi``. ``names`` adapts only
    some parameters: ANIL (Raghu et al. 2020, "Rapid learning or feature reuse?") adapts only the head,
    e.g. ``names=['head']``; the others pass through unchanged (the very same tensors).

    Args:
        model: called with ``params`` through ``torch.func.functional_call`` (the module is not changed).
        params: dict name -> tensor, e.g. ``dict(model.named_parameters())``; names left out use the module's own.
        x, y: one task's support set, e.g. images ``(W*S, C, H, W)`` and labels ``(W*S,)``, or ``(K, 1)`` twice.
        loss_fn: ``loss_fn(outputs, y) -> scalar``, e.g. ``F.cross_entropy``, ``F.mse_loss`` (half-precision
            outputs are cast to float32 first). ``inner_lr``: ``alpha`` > 0. ``steps``: int >= 1.
        names: parameter names or module prefixes (``'head'``) to adapt; default every parameter in ``params``.

    Returns:
        dict with the keys of ``params``: adapted tensors for ``names``, the input tensors for the rest.
        Gradients are enabled inside even under ``torch.no_grad()``: adaptation needs them.
    """
    selected = _check_params(model, params, names)
    inner_lr = positive_number(inner_lr, "inner_lr")
    steps = whole_number(steps, "steps")
    params = dict(params)
    with torch.enable_grad():
        for name in selected:  # e.g. detached weights at evaluation: still differentiable for the inner step
            if not params[name].requires_grad:
                params[name] = params[name].detach().requires_grad_(True)
        for _ in range(steps):
            loss = loss_fn(_loss_precision(functional_call(model, params, (x,))), y)
            grads = torch.autograd.grad(loss, [params[n] for n in selected], create_graph=not first_order)
            params.update({n: params[n] - inner_lr * g for n, g in zip(selected, grads)})
    return params


def maml_query_loss(model: nn.Module, params: dict, x_support, y_support, x_query, y_query, loss_fn,
                    inner_lr: float, steps: int = 1, first_order: bool = False, names=None) -> torch.Tensor:
    """MAML's meta-objective for one task: the query loss after :func:`adapt` on the support set.

    ``L(theta) = loss_fn(f_phi(x_query), y_query)`` with ``phi = adapt(theta, x_support, y_support)``
    (Finn et al. 2017); its gradient with respect to ``params`` is the task's meta-gradient (first-order
    or second-order, and ANIL with ``names``, as in :func:`adapt`). A meta-batch averages it over tasks.
    Returns a scalar (float32 for half-precision outputs).
    """
    adapted = adapt(model, params, x_support, y_support, loss_fn, inner_lr, steps, first_order, names)
    return loss_fn(_loss_precision(functional_call(model, adapted, (x_query,))), y_query)


def reptile_update(params: dict, adapted, outer_lr: float) -> dict:
    """Reptile's outer step: ``theta + epsilon * (phi - theta)``, detached.

    Nichol, Achiam & Schulman (2018), "On first-order meta-learning algorithms": ``phi`` is ``theta`` after a
    few SGD steps on one task (:func:`adapt` with ``first_order=True``); for a batch of tasks pass a list of
    ``phi``s and the step uses their mean, ``theta + epsilon * mean_i(phi_i - theta)``.

    ``params``: dict name -> ``theta``; ``adapted``: a dict ``phi`` with the same names and shapes, or a list of
    them; ``outer_lr``: ``epsilon`` > 0. Returns dict name -> new tensor (no graph); copy it into the model
    with ``p.copy_(new[name])`` under ``torch.no_grad()``.
    """
    outer_lr = positive_number(outer_lr, "outer_lr")
    if not isinstance(params, Mapping):
        raise TypeError("params must be a dict name -> tensor, e.g. dict(model.named_parameters()).")
    phis = [adapted] if isinstance(adapted, Mapping) else list(adapted) if isinstance(adapted, (list, tuple)) else []
    if not phis or not all(isinstance(phi, Mapping) for phi in phis):
        raise TypeError("adapted must be a dict name -> tensor (from tl.meta.adapt) or a non-empty list of them.")
    for phi in phis:
        if set(phi) != set(params):
            missing, extra = sorted(set(params) - set(phi)), sorted(set(phi) - set(params))
            raise ValueError(f"adapted must have the names of params; missing {missing}, unexpected {extra}.")
        bad = [n for n, theta in params.items() if phi[n].shape != theta.shape]
        if bad:  # would broadcast silently
            raise ValueError(f"adapted[{bad[0]!r}] has shape {tuple(phi[bad[0]].shape)}, params {tuple(params[bad[0]].shape)}.")
    mean_phi = {n: torch.stack([phi[n].detach() for phi in phis]).mean(0) for n in params}
    return {n: theta.detach() + outer_lr * (mean_phi[n] - theta.detach()) for n, theta in params.items()}

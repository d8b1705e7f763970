"""Tests of tlbook.losses against independent computations (NumPy sums, the paper's high-T limit).

``distillation_loss`` = alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(y, z_s),
Hinton, Vinyals & Dean (2015). The T^2 factor is checked numerically: with it the soft term's
gradient with respect to the student's logits stays about the same size for every T; without it
the gradient shrinks like 1/T^2.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tlbook as tl

B, K = 16, 10


def logits(seed, scale=3.0, batch=B, classes=K):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, classes, generator=gen, dtype=torch.float64)


def labels(seed, batch=B, classes=K):
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed))


def numpy_reference(z_s, z_t, y, T, alpha):
    """The loss written with explicit sums in NumPy: no torch function is shared with the library."""
    z_s, z_t = np.asarray(z_s, dtype=np.float64), np.asarray(z_t, dtype=np.float64)

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_p_teacher, log_p_student = log_softmax(z_t / T), log_softmax(z_s / T)
    kl_per_example = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=1)
    soft = kl_per_example.mean()  # "batchmean": summed over classes, averaged over the batch
    hard = 0.0 if y is None else -log_softmax(z_s)[np.arange(len(z_s)), np.asarray(y)].mean()
    return alpha * T**2 * soft + (1 - alpha) * hard


@pytest.mark.parametrize("T", [1.0, 2.5, 4.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_loss_matches_numpy_sums(T, alpha):
    z_s, z_t, y = logits(0), logits(1), labels(2)
    got = tl.distillation_loss(z_s, z_t, y, temperature=T, alpha=alpha)
    want = numpy_reference(z_s.numpy(), z_t.numpy(), y.numpy(), T, alpha)
    assert got.ndim == 0
    assert got.item() == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_alpha_zero_is_cross_entropy_and_alpha_one_needs_no_labels():
    z_s, z_t, y = logits(3), logits(4), labels(5)
    torch.testing.assert_close(tl.distillation_loss(z_s, z_t, y, 7.0, 0.0), F.cross_entropy(z_s.float(), y))
    with_labels = tl.distillation_loss(z_s, z_t, y, 7.0, 1.0)
    torch.testing.assert_close(tl.distillation_loss(z_s, z_t, None, 7.0, 1.0), with_labels)
    assert with_labels.item() == pytest.approx(numpy_reference(z_s, z_t, None, 7.0, 1.0), rel=1e-6)


def test_soft_term_is_zero_when_student_equals_teacher_and_teacher_gets_no_gradient():
    z = logits(6)
    assert tl.distillation_loss(z, z.clone(), None, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    z_s, z_t = logits(7).requires_grad_(), logits(8).requires_grad_()
    tl.distillation_loss(z_s, z_t, labels(9), 4.0, 0.7).backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    assert z_t.grad is None, "the teacher's logits are a constant target"


def soft_gradient_norm(z_s, z_t, T, scaled=True):
    """Norm of d(soft term)/d(student logits); unscaled = without the T^2 factor."""
    z_s = z_s.clone().requires_grad_()
    loss = tl.distillation_loss(z_s, z_t, None, temperature=T, alpha=1.0)
    if not scaled:
        loss = loss / T**2
    (grad,) = torch.autograd.grad(loss, z_s)
    return grad.norm().item()


TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 20.0)


def centred(z):
    return z - z.mean(1, keepdim=True)


def test_t_squared_keeps_the_soft_gradient_comparable_across_temperatures():
    # Small, centred logits (the regime of the paper's derivation): measured max/min ratio 1.03
    # with T^2; without it the gradient at T = 20 is 1/412 of that at T = 1 (1/T^2 = 1/400).
    z_s, z_t = centred(logits(10, scale=0.5)), centred(logits(11, scale=0.5))
    scaled = np.array([soft_gradient_norm(z_s, z_t, T) for T in TEMPERATURES])
    unscaled = np.array([soft_gradient_norm(z_s, z_t, T, scaled=False) for T in TEMPERATURES])
    assert scaled.max() / scaled.min() < 2.0, dict(zip(TEMPERATURES, scaled))
    # Without T^2 the gradient shrinks like 1/T^2: its ratio to the T = 1 value tracks 1/T^2 within 2x.
    shrink = (unscaled / unscaled[0]) * np.array(TEMPERATURES) ** 2
    assert np.all((shrink > 0.5) & (shrink < 2.0)), dict(zip(TEMPERATURES, shrink))


def test_t_squared_with_trained_network_scale_logits():
    # Logits spread like a trained classifier's (std 5): at T = 1 the softmaxes saturate and the
    # gradient is smaller (measured: 0.28 at T = 1, 0.44-0.52 for T = 2..20). With T^2 it stays within
    # a factor 3 from T = 2 to 20 (measured 1.19); without it it falls 90x over the same range.
    z_s, z_t = centred(logits(12, scale=5.0)), centred(logits(13, scale=5.0))
    scaled = [soft_gradient_norm(z_s, z_t, T) for T in TEMPERATURES[1:]]
    unscaled = [soft_gradient_norm(z_s, z_t, T, scaled=False) for T in TEMPERATURES[1:]]
    assert max(scaled) / min(scaled) < 3.0, scaled
    assert unscaled[0] / unscaled[-1] > 30.0, unscaled


def test_high_temperature_limit_is_logit_matching():
    # Hinton et al. (2015), section 2.1: for T >> |z| and zero-mean logits, the gradient of the
    # T^2-scaled soft term per example is (z_s - z_t) / K; with batchmean it is divided by B.
    z_s, z_t = centred(logits(14, scale=1.0)), centred(logits(15, scale=1.0))
    z = z_s.clone().requires_grad_()
    (grad,) = torch.autograd.grad(tl.distillation_loss(z, z_t, None, 200.0, 1.0), z)
    expected = (z_s - z_t) / (K * B)
    # The next term of the expansion is O(|z| / T) relative: about 1% at T = 200.
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=0.02 * expected.abs().max().item())


def test_float32_inside_half_precision_autocast():
    # Under bf16 autocast the logits may arrive in bf16; the loss must still see the soft term.
    z_s, z_t = logits(16, scale=1.0).to(torch.bfloat16), logits(17, scale=1.0).to(torch.bfloat16)
    got = tl.distillation_loss(z_s, z_t, None, 20.0, 1.0)
    want = numpy_reference(z_s.float().numpy(), z_t.float().numpy(), None, 20.0, 1.0)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(teacher_logits=torch.zeros(B, K + 1)), r"same shape.*\(16, 10\) and \(16, 11\)"),
        (dict(student_logits=torch.zeros(B), teacher_logits=torch.zeros(B)), r"\(B, K\)"),
        (dict(temperature=0.0), r"temperature must be a positive number"),
        (dict(temperature=-2.0), r"T > 0"),
        (dict(temperature=float("nan")), r"temperature"),
        (dict(alpha=1.5), r"alpha must be in \[0, 1\]"),
        (dict(alpha=-0.1), r"alpha must be in \[0, 1\]"),
        (dict(labels=None, alpha=0.5), r"labels are required when alpha < 1.*alpha=1"),
        (dict(labels=torch.zeros(B + 1, dtype=torch.long)), r"labels must be \(B,\) = \(16,\).*\(17,\)"),
    ],
)
def test_bad_inputs_raise_helpful_errors(kwargs, message):
    args = dict(student_logits=torch.zeros(B, K), teacher_logits=torch.zeros(B, K),
                labels=torch.zeros(B, dtype=torch.long), temperature=2.0, alpha=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        tl.distillation_loss(**args)


def test_non_numeric_temperature_is_a_type_error():
    with pytest.raises(TypeError, match="temperature must be a number"):
        tl.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, "hot", 1.0)

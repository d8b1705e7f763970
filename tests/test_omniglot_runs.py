"""tlbook.omniglot.one_shot_runs: Lake et al.'s 20 within-alphabet one-shot runs (all_runs.zip)."""
import pytest
import torch

from tlbook.omniglot import one_shot_runs


@pytest.fixture(scope="module")
def runs():
    try:
        return one_shot_runs(size=28)
    except (FileNotFoundError, RuntimeError) as err:  # no offline data and no network
        pytest.skip(f"all_runs.zip unavailable: {err}")


def test_twenty_runs_of_twenty_characters_each_drawn_once_per_side(runs):
    assert len(runs) == 20
    for run in runs:
        assert run["train_images"].shape == (20, 1, 28, 28) and run["test_images"].shape == (20, 1, 28, 28)
        assert run["train_images"].dtype == torch.float32 and 0 <= run["test_images"].min() <= run["test_images"].max() <= 1
        # each test drawing names one training character, and every character is tested exactly once
        assert sorted(run["test_labels"].tolist()) == list(range(20))
        # strokes are 1 on a 0 background, like the other datasets (most pixels are background)
        assert run["train_images"].mean() < 0.3


def test_the_labels_follow_the_files_class_labels(runs):
    # run01/class_labels.txt starts with "run01/test/item01.png run01/training/class08.png"
    assert runs[0]["test_labels"][0].item() == 7


@pytest.mark.parametrize("size", [0, -3, 2.5, "28"])
def test_bad_input_size_is_refused(size):
    with pytest.raises((ValueError, TypeError), match="size"):
        one_shot_runs(size=size)

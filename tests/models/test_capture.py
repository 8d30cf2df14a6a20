"""Penultimate features: the input of the final nn.Linear, and a refusal, with the reason,
when the logits are not that layer's affine map of them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ncood.errors import NcoodError
from ncood.models.capture import FeatureTap, check_affine, choose_head, final_linear


class Net(nn.Module):
    """conv → pool → a 2-layer MLP head; ``after`` runs on the logits (identity by default)."""

    def __init__(self, after: nn.Module | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.hidden = nn.Linear(6, 5)
        self.fc = nn.Linear(5, 4)
        self.after = after or nn.Identity()

    def penultimate(self, x):
        return torch.relu(self.hidden(torch.flatten(self.body(x), 1)))

    def forward(self, x):
        return self.after(self.fc(self.penultimate(x)))


def batch() -> torch.Tensor:
    return torch.randn(7, 3, 8, 8, generator=torch.Generator().manual_seed(2))


def test_the_final_linear_input_is_captured_and_reproduces_the_logits():
    model = Net().eval()
    choice = choose_head(model)
    assert final_linear(model)[0] == "fc" and choice.head_name == "fc"
    with torch.no_grad(), FeatureTap(model, choice) as tap:
        features, logits = tap.forward(batch())
        assert check_affine(features, logits, choice) < 1e-6
        expected = model.penultimate(batch())
    assert torch.equal(features, expected)
    assert torch.equal(logits, model(batch()))
    assert not model.fc._forward_pre_hooks  # the tap removes its hook


class Temperature(nn.Module):
    def forward(self, logits):
        return logits / 2.0


@pytest.mark.parametrize(
    "after", [nn.ReLU(), nn.Softmax(dim=1), Temperature()], ids=["relu", "softmax", "temperature"]
)
def test_a_head_that_is_not_affine_is_refused_with_the_reason(after):
    model = Net(after).eval()
    choice = choose_head(model)
    with torch.no_grad(), FeatureTap(model, choice) as tap:
        features, logits = tap.forward(batch())
    with pytest.raises(NcoodError, match="not features @ W.T") as caught:
        check_affine(features, logits, choice)
    message = str(caught.value)
    assert "\n" not in message and "--feature-layer" in message and "relative error" in message


def test_feature_layer_names_a_module_whose_output_is_read():
    model = Net().eval()
    choice = choose_head(model, "hidden")  # a Linear: it becomes the head
    assert choice.head_name == "hidden" and choice.reads_head_input
    with torch.no_grad(), FeatureTap(model, choice) as tap:
        features, logits = tap.forward(batch())
    with pytest.raises(NcoodError, match="returns 4 logits but its final linear layer 'hidden'"):
        check_affine(features, logits, choice)

    choice = choose_head(model, "body")  # not a Linear: its output, flattened, feeds the head fc
    assert choice.head_name == "fc" and choice.describe() == "output of body"
    with torch.no_grad(), FeatureTap(model, choice) as tap:
        features, logits = tap.forward(batch())
    with pytest.raises(NcoodError, match="has 6 values per image but the head 'fc' takes 5"):
        check_affine(features, logits, choice)


def test_unknown_feature_layer_and_a_model_without_linear_are_one_line():
    with pytest.raises(NcoodError, match=r"'bodyy' is not a module of the model \(close: body"):
        choose_head(Net(), "bodyy")
    with pytest.raises(NcoodError, match="has no nn.Linear"):
        choose_head(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_a_head_called_twice_or_a_forward_without_tensor_logits_is_refused():
    class Twice(Net):
        def forward(self, x):
            return self.fc(self.penultimate(x)) + self.fc(self.penultimate(x))

    class Pair(Net):
        def forward(self, x):
            return self.fc(self.penultimate(x)), None

    for model, message in ((Twice(), "ran 2 times"), (Pair(), "returned tuple")):
        with (
            torch.no_grad(),
            FeatureTap(model, choose_head(model)) as tap,
            pytest.raises(NcoodError, match=message),
        ):
            tap.forward(batch())

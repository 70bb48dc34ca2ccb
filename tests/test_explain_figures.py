"""The attention and contribution figures are readable: titles, axis labels, colour bars, token labels (thinned
when many), sensible PNG sizes; the text HTML is self-contained and escaped; edge cases draw without NaN."""

import re

import numpy as np
import pytest
from PIL import Image

from fusion.explain import figures

RNG = np.random.default_rng(0)
TOKENS = ["the", "quick", "##brown", "[CLS]", "fox", "<script>", "jumps", "over", "a", "lazy", "dog", "."]


def _weights(*shape):
    w = RNG.random(shape)
    return w / w.sum(axis=-1, keepdims=True)


def _axes(fig) -> list:
    """Every axes of the figure, inset ones (a colour bar beside an image) included."""
    found, todo = [], list(fig.axes)
    while todo:
        ax = todo.pop()
        found.append(ax)
        todo.extend(ax.child_axes)
    return found


def _labels(fig) -> set[str]:
    """Every axis label, title, colour-bar label and text drawn on the figure."""
    found = {fig._suptitle.get_text()} if fig._suptitle else set()
    for ax in _axes(fig):
        found |= {ax.get_title(), ax.get_xlabel(), ax.get_ylabel()}
        found |= {t.get_text() for t in ax.texts}
    return {f for f in found if f}


def _colourbar_labels(fig) -> list[str]:
    """Labels of the colour-bar axes (matplotlib marks them with a _colorbar attribute)."""
    return [(ax.get_xlabel() or ax.get_ylabel()) for ax in _axes(fig) if hasattr(ax, "_colorbar")]


def _png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_text_figure_shows_every_token_and_a_weight_colour_bar(tmp_path):
    weights = _weights(len(TOKENS))
    fig = figures.build_text_attention(TOKENS, weights, "sample s1 · true: a · predicted: a")
    shown = _labels(fig)
    for token in TOKENS:
        assert token in shown, f"token {token!r} not drawn"
    assert any("attention weight" in label for label in _colourbar_labels(fig))
    assert any("sample s1" in label for label in shown)
    width, height = _png(figures.plot_text_attention(TOKENS, weights, tmp_path / "t.png", "title"))
    assert width >= 800 and 150 <= height <= 2000


def test_text_figure_wraps_many_tokens_into_lines_and_shortens_long_ones(tmp_path):
    tokens = [f"token{i}" for i in range(64)] + ["x" * 60]
    fig = figures.build_text_attention(tokens, _weights(len(tokens)), "many")
    drawn = [t for ax in fig.axes for t in ax.texts]
    assert len({round(t.get_position()[1], 3) for t in drawn}) > 1, "64 tokens should wrap onto several lines"
    assert all(t.get_fontsize() >= 9 for t in drawn)
    assert any(t.get_text().endswith("\u2026") and len(t.get_text()) < 60 for t in drawn)
    _png(figures.plot_text_attention(tokens, _weights(len(tokens)), tmp_path / "many.png", "many"))


def test_text_html_is_self_contained_escaped_and_has_one_span_per_token():
    weights = _weights(len(TOKENS))
    page = figures.text_attention_html(TOKENS, weights, "a <title>", note="mean over heads")
    assert "<script>" not in page.split("<body>", 1)[1]
    assert "&lt;script&gt;" in page and "&lt;title&gt;" in page
    assert not re.search(r"(src|href)=[\"']?https?:", page) and "http://" not in page and "https://" not in page
    assert page.count('<span class="tok"') == len(TOKENS)
    tooltips = re.findall(r'<span class="tok" title="([^"]*)"', page)
    for tooltip, weight in zip(tooltips, weights, strict=True):
        assert f"{weight:.4g}" in tooltip
    assert "http" not in page
    fragment = figures.text_attention_fragment(TOKENS, weights, "a <title>")
    assert "<html" not in fragment and fragment.count('<span class="tok"') == len(TOKENS)
    assert page.lstrip().lower().startswith("<!doctype html>") and "mean over heads" in page


def test_image_figure_has_the_image_the_overlay_and_a_colour_bar(tmp_path):
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fig = figures.build_image_attention(image, _weights(8 * 8).reshape(8, 8), "image title")
    shown = _labels(fig)
    assert "image" in shown and any("8\u00d78 patches" in s for s in shown)
    assert any(label for ax in fig.axes for label in (ax.get_xlabel(), ax.get_ylabel()) if "pixel" in label)
    assert any("attention weight" in label for label in _colourbar_labels(fig))
    width, height = _png(figures.plot_image_attention(image, np.ones((1, 1)), tmp_path / "one.png", "1x1 grid"))
    assert width >= 600 and height >= 300


@pytest.mark.parametrize("grid", [False, True], ids=["tokens-over-time", "freq-time-grid"])
def test_audio_figure_has_spectrogram_time_axis_and_attention_over_time(grid, tmp_path):
    mel = RNG.standard_normal((64, 101))
    weights = _weights(4, 13) if grid else _weights(26)
    fig = figures.build_audio_attention(mel, weights, 4.0 if not grid else 101 / 13, 0.01, "audio", valid_frames=90)
    shown = _labels(fig)
    assert {"mel bin", "time (s)"} <= shown
    assert any("attention weight" in s for s in shown)
    assert "log-mel (standardised)" in _colourbar_labels(fig)
    _png(figures.plot_audio_attention(mel, weights, 4.0, 0.01, tmp_path / "a.png", "audio", valid_frames=90))


def test_cross_attention_heatmap_labels_its_axes_with_tokens_and_thins_them_when_many(tmp_path):
    matrix = _weights(5, 7)
    rows, cols = [f"q{i}" for i in range(5)], [f"k{i}" for i in range(7)]
    fig = figures.build_cross_attention(matrix, rows, cols, "text", "image", "cross")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == rows
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert "text" in ax.get_ylabel() and "image" in ax.get_xlabel()
    assert any("attention weight" in label for label in _colourbar_labels(fig))
    big = figures.build_cross_attention(
        _weights(40, 300), [f"q{i}" for i in range(40)], [f"k{i}" for i in range(300)], "audio", "image", "big"
    )
    labels = [t.get_text() for t in big.axes[0].get_xticklabels()]
    assert 1 < len(labels) < 300 and labels[0] == "k0"
    assert labels == [f"k{int(i)}" for i in big.axes[0].get_xticks()]
    assert "labelled" in big.axes[0].get_xlabel()
    zero_rows = np.zeros((3, 4))
    zero_rows[0] = 0.25
    assert "no valid key" in _labels(
        figures.build_cross_attention(zero_rows, ["a", "b", "c"], list("wxyz"), "text", "audio", "zero rows")
    )
    size = _png(
        figures.plot_cross_attention(
            zero_rows, ["a", "b", "c"], list("wxyz"), "text", "audio", tmp_path / "z.png", "zero rows"
        )
    )
    assert size[0] >= 400
    _png(
        figures.plot_cross_attention(
            _weights(1, 9),
            ["latent 0"],
            [f"t{i}" for i in range(9)],
            "latents",
            "text",
            tmp_path / "one_row.png",
            "1 x N",
        )
    )


def test_contribution_figure_has_a_panel_per_measure_and_a_legend_per_modality(tmp_path):
    modalities = ["text", "image", "audio"]
    measures = {"gate value": _weights(2, 3), "drop when removed": RNG.normal(size=(2, 3))}
    averages = {"test/acc drop when removed (test split)": np.array([0.2, -0.05, 0.1])}
    fig = figures.build_contribution(["s1", "s2"], modalities, measures, "contribution", averages=averages)
    ylabels = " ".join(ax.get_ylabel().replace("\n", " ") for ax in fig.axes)
    for name in [*measures, *averages]:
        assert name.split()[0] in ylabels
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    legends += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert set(modalities) <= set(legends)
    assert figures.modality_colour("text") != figures.modality_colour("audio")
    _png(figures.plot_contribution(["s1", "s2"], modalities, measures, tmp_path / "c.png", "c", averages=averages))


def test_all_zero_weights_and_a_single_token_draw_without_nan(tmp_path):
    page = figures.text_attention_html(["only"], np.zeros(1), "zero")
    assert "nan" not in page.lower()
    zero = figures.build_text_attention(["only", "two"], np.zeros(2), "zero")
    assert all(np.isfinite(patch.get_facecolor()).all() for ax in zero.axes for patch in ax.patches)
    _png(figures.plot_text_attention(["only"], np.zeros(1), tmp_path / "zero.png", "zero"))
    _png(figures.plot_image_attention(np.zeros((32, 32, 3), np.uint8), np.zeros((4, 4)), tmp_path / "i.png", "zero"))
    _png(figures.plot_audio_attention(np.zeros((8, 10)), np.zeros(3), 4.0, 0.01, tmp_path / "a.png", "zero"))
    standardised = RNG.standard_normal((32, 32, 3)).astype(np.float32)  # a model's input tensor, not uint8
    _png(figures.plot_image_attention(standardised, _weights(2, 2), tmp_path / "float.png", "standardised image"))
    _png(
        figures.plot_audio_attention(
            RNG.standard_normal((16, 40)),
            np.zeros((2, 5)),
            8.0,
            0.01,
            tmp_path / "grid.png",
            "zero grid",
            valid_frames=30,
        )
    )
    with pytest.raises(ValueError, match="tokens"):
        figures.build_text_attention(["a", "b"], np.ones(3), "mismatch")

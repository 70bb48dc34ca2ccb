"""Figures of what a model attended to and how much each modality counted: text tokens coloured by attention
(HTML and PNG), image patches and spectrogram frames under their attention, cross-modal attention heatmaps
and per-modality contribution bars. Pure: arrays and strings in, a Figure (`build_*`) or a file (`plot_*`) out."""

from __future__ import annotations

import html
import textwrap
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps, transforms  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

from fusion.tracking.figures import save_figure  # noqa: E402

# Colour maps: one sequential map for token weights (HTML, PNG boxes, heatmaps), one for overlays on pictures.
ATTENTION_CMAP = "Reds"
OVERLAY_CMAP = "inferno"
OVERLAY_ALPHA = 0.5
SPECTROGRAM_CMAP = "magma"
AUDIO_OVERLAY_RGB = (0.0, 1.0, 1.0)  # cyan: stands out on magma
AUDIO_OVERLAY_MAX_ALPHA = 0.65
WEIGHT_LABEL = "attention weight"
ROW_SUM_LABEL = "attention weight\n(row sums to 1)"
MODALITY_COLOURS = {"text": "tab:blue", "image": "tab:orange", "audio": "tab:green"}
FALLBACK_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:red")

# Legibility: the smallest font a label gets, where long labels are cut, where light text starts.
FONT_PT = 11
SMALL_FONT_PT = 9
MAX_TOKEN_CHARS = 18
MAX_TICK_CHARS = 14
DARK_LUMINANCE = 0.5  # backgrounds darker than this get white text
LEGEND_STOPS = 11  # colour stops of the HTML legend gradient
ELLIPSIS = "\u2026"

# Text PNG layout, in inches.
TEXT_FIG_WIDTH_IN = 10.0
TEXT_SIDE_MARGIN_IN = 0.35
TOKEN_PAD_IN = 0.05
TOKEN_GAP_IN = 0.07
COLOURBAR_ROW_IN = 0.9
TITLE_ROW_IN = 0.6

# Image, audio, heatmap and bar layout, in inches.
IMAGE_PANEL_IN = 4.2
COLOURBAR_INSET = (1.04, 0.0, 0.05, 1.0)  # beside an axes, in its own coordinates: x, y, width, height
AUDIO_FIG_WIDTH_IN = 10.0
AUDIO_HEIGHTS_IN = (3.2, 1.6)
HEATMAP_CELL_IN = 0.28
HEATMAP_MIN_IN = (5.0, 3.0)
HEATMAP_MAX_IN = (14.0, 11.0)
TICK_LABEL_IN = 0.2  # room one tick label needs along an axis at SMALL_FONT_PT
ANNOTATE_MAX_CELLS = 144  # heatmaps up to this size print each weight in its cell
BAR_GROUP_IN = 0.5  # width per bar in the contribution figure
BAR_PANEL_HEIGHT_IN = 2.8
BAR_MIN_WIDTH_IN = 6.0
BAR_GROUP_WIDTH = 0.8  # fraction of a group's slot the bars fill


# ---------------------------------------------------------------- shared helpers


def modality_colour(modality: str) -> str:
    """The fixed colour of a modality (text, image, audio), so every figure draws it the same way."""
    if modality in MODALITY_COLOURS:
        return MODALITY_COLOURS[modality]
    return FALLBACK_COLOURS[zlib.crc32(modality.encode()) % len(FALLBACK_COLOURS)]


def weight_norm(weights: np.ndarray) -> Normalize:
    """Colour scale from 0 (or a negative minimum) to the largest weight; never empty, so all-zero weights work."""
    finite = np.nan_to_num(np.asarray(weights, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    return Normalize(vmin=low, vmax=high if high > low else low + 1.0)


def _clean(weights: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(weights, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)


def _rgba(weights: np.ndarray, norm: Normalize, cmap: str = ATTENTION_CMAP) -> np.ndarray:
    return colormaps[cmap](norm(_clean(weights)))


def _is_dark(rgba: Sequence[float]) -> bool:
    """Relative luminance (Rec. 709) below the threshold: such a background needs white text."""
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < DARK_LUMINANCE


def _css_rgb(rgba: Sequence[float]) -> str:
    r, g, b = (int(round(255 * c)) for c in rgba[:3])
    return f"rgb({r},{g},{b})"


def visible_token(token: str) -> str:
    """A token as the tokenizer produced it (##pieces, [CLS] kept), with line breaks and tabs made visible."""
    return token.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def shorten(label: str, max_chars: int) -> str:
    """Cut a long label with an ellipsis so it fits a box or a tick."""
    label = visible_token(label)
    return label if len(label) <= max_chars else label[: max_chars - 1] + ELLIPSIS


def _wrap(title: str, width_in: float, font_pt: float = FONT_PT) -> str:
    """Wrap a long title to the figure's width (about half an em per character)."""
    chars = max(20, int(width_in * 72 / (0.55 * font_pt)))
    return "\n".join(textwrap.wrap(title, chars)) or title


def _new_figure(width_in: float, height_in: float) -> Figure:
    """A figure outside pyplot's registry (no leak when only built), with an Agg canvas to measure text."""
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _check_tokens(tokens: Sequence[str], weights: np.ndarray) -> np.ndarray:
    weights = _clean(weights).reshape(-1)
    if len(tokens) != weights.size:
        raise ValueError(
            f"text attention: {len(tokens)} tokens but {weights.size} weights; "
            "pass one weight per token (crop padding from both)"
        )
    return weights


# ---------------------------------------------------------------- text: HTML


def text_attention_fragment(tokens: Sequence[str], weights: np.ndarray, title: str, note: str = "") -> str:
    """The body part (inline styles only) of the text attention page, so a report can embed several."""
    weights = _check_tokens(tokens, weights)
    norm = weight_norm(weights)
    spans = []
    for index, (token, weight, rgba) in enumerate(zip(tokens, weights, _rgba(weights, norm), strict=True)):
        colour = "#fff" if _is_dark(rgba) else "#000"
        spans.append(
            f'<span class="tok" title="token {index}: {WEIGHT_LABEL} {weight:.4g}" '
            f'style="background:{_css_rgb(rgba)};color:{colour};padding:2px 4px;margin:2px;border-radius:3px;'
            f'border:1px solid #ddd;display:inline-block;white-space:pre;min-width:0.6em">'
            f"{html.escape(visible_token(token))}</span>"
        )
    stops = np.linspace(0.0, 1.0, LEGEND_STOPS)
    gradient = ", ".join(_css_rgb(colormaps[ATTENTION_CMAP](s)) for s in stops)
    ticks = np.linspace(norm.vmin, norm.vmax, 3)
    note_html = f'<p style="margin:4px 0;color:#555;font-size:0.9em">{html.escape(note)}</p>' if note else ""
    return (
        f'<div class="attention-text" style="font-family:sans-serif;margin:12px 0">'
        f'<h3 style="margin:4px 0">{html.escape(title)}</h3>{note_html}'
        f'<div style="line-height:2;font-size:15px">{"".join(spans)}</div>'
        f'<div class="legend" style="margin-top:6px;font-size:12px;color:#333">'
        f'<div style="width:240px;height:12px;border:1px solid #999;background:linear-gradient(to right, {gradient})">'
        f'</div><div style="width:240px;display:flex;justify-content:space-between">'
        + "".join(f"<small>{tick:.3g}</small>" for tick in ticks)
        + f"</div><div>{WEIGHT_LABEL} (hover a token for its exact value)</div></div></div>"
    )


def text_attention_html(tokens: Sequence[str], weights: np.ndarray, title: str, note: str = "") -> str:
    """A complete self-contained HTML page (no external resources) of the tokens coloured by attention weight."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"{text_attention_fragment(tokens, weights, title, note)}</body></html>\n"
    )


# ---------------------------------------------------------------- text: PNG


def _layout_tokens(labels: Sequence[str], widths_in: Sequence[float], line_width_in: float) -> list[list[int]]:
    """Greedy line wrapping: token indices per line, each line no wider than the figure allows."""
    lines: list[list[int]] = [[]]
    used = 0.0
    for index, width in enumerate(widths_in):
        box = width + 2 * TOKEN_PAD_IN
        if lines[-1] and used + box > line_width_in:
            lines.append([])
            used = 0.0
        lines[-1].append(index)
        used += box + TOKEN_GAP_IN
    return lines


def build_text_attention(tokens: Sequence[str], weights: np.ndarray, title: str) -> Figure:
    """Tokens as coloured boxes wrapped into lines (same colours as the HTML) over a colour bar."""
    weights = _check_tokens(tokens, weights)
    norm = weight_norm(weights)
    labels = [shorten(token, MAX_TOKEN_CHARS) or " " for token in tokens]
    font = FontProperties(size=FONT_PT)
    probe = _new_figure(TEXT_FIG_WIDTH_IN, 1.0).canvas.get_renderer()
    widths = [probe.get_text_width_height_descent(label, font, ismath=False)[0] / probe.dpi for label in labels]
    text_height = probe.get_text_width_height_descent("Ag|", font, ismath=False)[1] / probe.dpi
    line_width = TEXT_FIG_WIDTH_IN - 2 * TEXT_SIDE_MARGIN_IN
    lines = _layout_tokens(labels, widths, line_width) if labels else []
    line_height = text_height + 2 * TOKEN_PAD_IN + TOKEN_GAP_IN
    area = max(1, len(lines)) * line_height

    fig = _new_figure(TEXT_FIG_WIDTH_IN, TITLE_ROW_IN + area + COLOURBAR_ROW_IN)
    grid = fig.add_gridspec(2, 3, height_ratios=[area, 0.18], width_ratios=[1, 2, 1])
    ax = fig.add_subplot(grid[0, :])
    ax.set_axis_off()
    ax.set_title(_wrap(title, TEXT_FIG_WIDTH_IN), fontsize=FONT_PT + 1)
    # Boxes are placed in inches from the token area's top-left corner, so they keep the measured size.
    origin = fig.dpi_scale_trans + transforms.ScaledTranslation(0, 1, ax.transAxes)
    colours = _rgba(weights, norm)
    for row, indices in enumerate(lines):
        x = 0.0
        y = -(row + 1) * line_height + TOKEN_GAP_IN / 2
        for index in indices:
            box_width = widths[index] + 2 * TOKEN_PAD_IN
            ax.add_patch(
                FancyBboxPatch(
                    (x, y),
                    box_width,
                    text_height + 2 * TOKEN_PAD_IN,
                    boxstyle="round,pad=0,rounding_size=0.03",
                    transform=origin,
                    facecolor=colours[index],
                    edgecolor="#bbbbbb",
                    linewidth=0.6,
                    clip_on=False,
                )
            )
            ax.text(
                x + box_width / 2,
                y + TOKEN_PAD_IN + text_height / 2,
                labels[index],
                transform=origin,
                ha="center",
                va="center",
                fontproperties=font,
                parse_math=False,
                clip_on=False,
                color="white" if _is_dark(colours[index]) else "black",
            )
            x += box_width + TOKEN_GAP_IN
    if not labels:
        ax.text(0.5, 0.5, "(no tokens)", transform=ax.transAxes, ha="center", va="center", color="grey")
    cax = fig.add_subplot(grid[1, 1])
    fig.colorbar(ScalarMappable(norm=norm, cmap=ATTENTION_CMAP), cax=cax, orientation="horizontal", label=WEIGHT_LABEL)
    return fig


def plot_text_attention(tokens: Sequence[str], weights: np.ndarray, path: str | Path, title: str) -> Path:
    """Save `build_text_attention` as a PNG."""
    return save_figure(build_text_attention(tokens, weights, title), path)


# ---------------------------------------------------------------- image


def _display_image(image: np.ndarray) -> np.ndarray:
    """uint8 shown as is; floats clipped to [0, 1], or min-max scaled when they are standardised values."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image
    image = image.astype(float)
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and high <= 1.0:
        return image
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def build_image_attention(image: np.ndarray, weights: np.ndarray, title: str) -> Figure:
    """The image alone beside the image under its patch attention (grid stretched over the pixels, faint lines)."""
    picture = _display_image(image)
    grid_weights = _clean(weights)
    if grid_weights.ndim != 2:
        raise ValueError(f"image attention: weights must be a [rows, cols] patch grid, got shape {grid_weights.shape}")
    height, width = picture.shape[:2]
    rows, cols = grid_weights.shape
    norm = weight_norm(grid_weights)
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)

    fig = _new_figure(2 * IMAGE_PANEL_IN + 1.4, IMAGE_PANEL_IN + 1.0)
    plain, overlay = fig.subplots(1, 2)
    gray = {"cmap": "gray", "vmin": 0, "vmax": 255 if picture.dtype == np.uint8 else 1} if picture.ndim == 2 else {}
    for ax in (plain, overlay):
        ax.imshow(picture, interpolation="nearest", extent=extent, **gray)
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    plain.set_title("image")
    overlay.imshow(
        grid_weights, cmap=OVERLAY_CMAP, norm=norm, alpha=OVERLAY_ALPHA, interpolation="nearest", extent=extent
    )
    overlay.set_title(f"attention over {rows}\u00d7{cols} patches")
    for col in range(1, cols):
        overlay.axvline(col * width / cols - 0.5, color="white", alpha=0.35, linewidth=0.6)
    for row in range(1, rows):
        overlay.axhline(row * height / rows - 0.5, color="white", alpha=0.35, linewidth=0.6)
    overlay.set_xlim(extent[0], extent[1])
    overlay.set_ylim(extent[2], extent[3])
    # An opaque bar (the overlay itself is half transparent) beside the picture and exactly as tall.
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=OVERLAY_CMAP), cax=overlay.inset_axes(COLOURBAR_INSET), label=WEIGHT_LABEL
    )
    fig.suptitle(_wrap(title, 2 * IMAGE_PANEL_IN + 1.4), fontsize=FONT_PT + 1)
    return fig


def plot_image_attention(image: np.ndarray, weights: np.ndarray, path: str | Path, title: str) -> Path:
    """Save `build_image_attention` as a PNG."""
    return save_figure(build_image_attention(image, weights, title), path)


# ---------------------------------------------------------------- audio


def _overlay_cmap() -> ListedColormap:
    """One hue whose opacity grows with the weight: attended time-frequency regions light up on the spectrogram."""
    ramp = np.linspace(0.0, AUDIO_OVERLAY_MAX_ALPHA, 256)
    return ListedColormap([(*AUDIO_OVERLAY_RGB, alpha) for alpha in ramp], name="attention_overlay")


def build_audio_attention(
    mel: np.ndarray,
    weights: np.ndarray,
    frames_per_token: float,
    seconds_per_frame: float,
    title: str,
    valid_frames: int | None = None,
) -> Figure:
    """Spectrogram (x in seconds) above the attention over time on a shared axis; padding greyed out.

    `weights` is either [n_tokens] (token i covers frames [i, i+1) * frames_per_token) or a [freq, time] grid
    (column j covers the same frames; rows split the mel bins evenly), which is also drawn over the spectrogram."""
    mel = np.asarray(mel, dtype=float)
    weights = _clean(weights)
    if mel.ndim != 2 or weights.ndim not in (1, 2):
        raise ValueError(
            f"audio attention: mel must be [n_mels, frames] and weights [tokens] or [freq, time]; "
            f"got {mel.shape} and {weights.shape}"
        )
    n_mels, frames = mel.shape
    steps = weights.shape[-1]
    span = max(frames, steps * frames_per_token) * seconds_per_frame
    over_time = weights if weights.ndim == 1 else weights.sum(axis=0)
    starts = np.arange(steps) * frames_per_token * seconds_per_frame

    fig = _new_figure(AUDIO_FIG_WIDTH_IN, sum(AUDIO_HEIGHTS_IN) + 0.6)
    grid = fig.add_gridspec(2, 2, height_ratios=AUDIO_HEIGHTS_IN, width_ratios=[1, 0.025])
    spec = fig.add_subplot(grid[0, 0])
    bars = fig.add_subplot(grid[1, 0], sharex=spec)
    shown = spec.imshow(
        mel,
        origin="lower",
        aspect="auto",
        cmap=SPECTROGRAM_CMAP,
        interpolation="nearest",
        extent=(0.0, frames * seconds_per_frame, 0.0, n_mels),
    )
    fig.colorbar(shown, cax=fig.add_subplot(grid[0, 1]), label="log-mel (standardised)")
    spec.set_ylabel("mel bin")
    spec.set_title("spectrogram" + (" with attention over time \u00d7 frequency (cyan)" if weights.ndim == 2 else ""))
    spec.tick_params(labelbottom=False)
    if weights.ndim == 2:
        norm = weight_norm(weights)
        spec.imshow(
            weights,
            origin="lower",
            aspect="auto",
            cmap=_overlay_cmap(),
            norm=norm,
            interpolation="nearest",
            extent=(0.0, steps * frames_per_token * seconds_per_frame, 0.0, n_mels),
        )
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=_overlay_cmap()),
            cax=fig.add_subplot(grid[1, 1]),
            label=f"{WEIGHT_LABEL}\n(cyan overlay)",
        )
    bars.bar(
        starts,
        over_time,
        width=frames_per_token * seconds_per_frame,
        align="edge",
        color="tab:red",
        edgecolor="white",
        linewidth=0.4,
    )
    bars.axhline(0.0, color="black", linewidth=0.6)
    bars.set_ylabel(WEIGHT_LABEL if weights.ndim == 1 else f"{WEIGHT_LABEL}\n(summed over freq.)")
    bars.set_xlabel("time (s)")
    if valid_frames is not None and valid_frames * seconds_per_frame < span:
        for ax in (spec, bars):
            ax.axvspan(
                valid_frames * seconds_per_frame,
                span,
                facecolor="lightgrey",
                alpha=0.7,
                hatch="//",
                edgecolor="grey",
                linewidth=0,
                label="padding",
            )
        bars.legend(loc="upper right", fontsize=SMALL_FONT_PT)
    spec.set_xlim(0.0, span)
    spec.set_ylim(0.0, n_mels)
    fig.suptitle(_wrap(title, AUDIO_FIG_WIDTH_IN), fontsize=FONT_PT + 1)
    return fig


def plot_audio_attention(
    mel: np.ndarray,
    weights: np.ndarray,
    frames_per_token: float,
    seconds_per_frame: float,
    path: str | Path,
    title: str,
    valid_frames: int | None = None,
) -> Path:
    """Save `build_audio_attention` as a PNG."""
    return save_figure(
        build_audio_attention(mel, weights, frames_per_token, seconds_per_frame, title, valid_frames), path
    )


# ---------------------------------------------------------------- cross-modal heatmap


def thinned_ticks(count: int, room_in: float) -> np.ndarray:
    """Every k-th position, k chosen so the labels fit in `room_in` inches without overlapping."""
    fits = max(1, int(room_in / TICK_LABEL_IN))
    step = max(1, int(np.ceil(count / fits)))
    return np.arange(0, count, step)


def _thinning_note(ticks: np.ndarray) -> str:
    """', every 3rd labelled' when ticks were thinned, else nothing."""
    step = int(ticks[1] - ticks[0]) if len(ticks) > 1 else 1
    if step == 1:
        return ""
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f", every {step}{suffix} labelled"


def build_cross_attention(
    matrix: np.ndarray,
    query_labels: Sequence[str],
    key_labels: Sequence[str],
    query_name: str,
    key_name: str,
    title: str,
) -> Figure:
    """Heatmap of one modality's queries (rows) over another's keys (columns); rows with no valid key are hatched."""
    matrix = _clean(matrix)
    if matrix.ndim != 2 or matrix.shape != (len(query_labels), len(key_labels)):
        raise ValueError(
            f"cross attention {query_name} -> {key_name}: matrix shape {matrix.shape} does not match "
            f"{len(query_labels)} query and {len(key_labels)} key labels"
        )
    n_query, n_key = matrix.shape
    width = float(np.clip(HEATMAP_CELL_IN * n_key + 3.0, HEATMAP_MIN_IN[0], HEATMAP_MAX_IN[0]))
    height = float(np.clip(HEATMAP_CELL_IN * n_query + 2.4, HEATMAP_MIN_IN[1], HEATMAP_MAX_IN[1]))
    norm = weight_norm(matrix)
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    shown = ax.imshow(matrix, cmap=ATTENTION_CMAP, norm=norm, aspect="auto", interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label=ROW_SUM_LABEL)
    columns = thinned_ticks(n_key, width - 2.5)
    rows = thinned_ticks(n_query, height - 2.0)
    ax.set_xticks(
        columns,
        labels=[shorten(key_labels[i], MAX_TICK_CHARS) for i in columns],
        rotation=60,
        ha="right",
        rotation_mode="anchor",
        fontsize=SMALL_FONT_PT,
    )
    ax.set_yticks(rows, labels=[shorten(query_labels[i], MAX_TICK_CHARS) for i in rows], fontsize=SMALL_FONT_PT)
    for label in (*ax.get_xticklabels(), *ax.get_yticklabels()):
        label.set_parse_math(False)
    ax.set_xlabel(f"{key_name} (keys)" + _thinning_note(columns))
    ax.set_ylabel(f"{query_name} (queries)" + _thinning_note(rows))
    empty = ~matrix.any(axis=1)
    for row in np.flatnonzero(empty):
        ax.add_patch(
            Rectangle((-0.5, row - 0.5), n_key, 1, facecolor="none", edgecolor="grey", hatch="///", linewidth=0)
        )
        ax.text(
            (n_key - 1) / 2,
            row,
            "no valid key",
            ha="center",
            va="center",
            fontsize=SMALL_FONT_PT,
            color="dimgrey",
            backgroundcolor="white",
            parse_math=False,
        )
    if matrix.size <= ANNOTATE_MAX_CELLS:
        for i in np.flatnonzero(~empty):
            for j in range(n_key):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=SMALL_FONT_PT - 1,
                    color="white" if _is_dark(colormaps[ATTENTION_CMAP](norm(matrix[i, j]))) else "black",
                )
    ax.set_title(_wrap(title, width), fontsize=FONT_PT + 1)
    return fig


def plot_cross_attention(
    matrix: np.ndarray,
    query_labels: Sequence[str],
    key_labels: Sequence[str],
    query_name: str,
    key_name: str,
    path: str | Path,
    title: str,
) -> Path:
    """Save `build_cross_attention` as a PNG."""
    return save_figure(build_cross_attention(matrix, query_labels, key_labels, query_name, key_name, title), path)


# ---------------------------------------------------------------- modality contribution


def _contribution_panels(
    samples: Sequence[str],
    modalities: Sequence[str],
    measures: Mapping[str, np.ndarray],
    averages: Mapping[str, np.ndarray],
) -> list[tuple[str, list[str], np.ndarray]]:
    """(measure, group labels, values [groups, modalities]) per panel; a split average joins its measure's panel
    as a last 'average' group, or gets a panel of its own when no per-sample measure has its name."""
    shape = (len(samples), len(modalities))
    panels = []
    for name, values in measures.items():
        values = np.asarray(values, dtype=float)
        if values.shape != shape:
            raise ValueError(
                f"contribution '{name}': values of shape {values.shape}, expected {shape} "
                "(one row per sample, one column per modality)"
            )
        groups, rows = list(samples), values
        if name in averages:
            groups, rows = groups + ["average"], np.vstack([values, np.asarray(averages[name], dtype=float)])
        panels.append((name, groups, rows))
    for name, values in averages.items():
        if name not in measures:
            panels.append((name, ["average"], np.asarray(values, dtype=float).reshape(1, len(modalities))))
    return panels


def build_contribution(
    samples: Sequence[str],
    modalities: Sequence[str],
    measures: Mapping[str, np.ndarray],
    title: str,
    averages: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """One panel per measure: bars per sample, one per modality in its fixed colour, the split average hatched."""
    panels = _contribution_panels(samples, modalities, measures, averages or {})
    if not panels:
        raise ValueError("contribution figure: no measures given; pass at least one measure or average")
    most_groups = max(len(groups) for _, groups, _ in panels)
    most_bars = most_groups * (len(modalities) + 1)
    width = max(BAR_MIN_WIDTH_IN, BAR_GROUP_IN * most_bars + 2.5)
    fig = _new_figure(width, BAR_PANEL_HEIGHT_IN * len(panels) + 0.8)
    slot = BAR_GROUP_WIDTH / max(1, len(modalities))
    for number, (name, groups, values) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, number + 1)
        positions = np.arange(len(groups))
        for m, modality in enumerate(modalities):
            offsets = positions - BAR_GROUP_WIDTH / 2 + (m + 0.5) * slot
            heights = np.nan_to_num(values[:, m], nan=0.0)
            drawn = ax.bar(
                offsets,
                heights,
                width=slot,
                color=modality_colour(modality),
                label=modality,
                edgecolor="white",
                linewidth=0.5,
            )
            for bar, group in zip(drawn, groups, strict=True):
                if group == "average":
                    bar.set_hatch("//")
            ax.bar_label(
                drawn,
                labels=["n/a" if np.isnan(v) else f"{v:.2f}" for v in values[:, m]],
                fontsize=SMALL_FONT_PT - 1,
                padding=2,
            )
        if "average" in groups and len(groups) > 1:
            ax.axvline(len(groups) - 1.5, color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(
            positions,
            labels=[shorten(g, MAX_TICK_CHARS) for g in groups],
            fontsize=SMALL_FONT_PT,
            rotation=30 if len(groups) > 6 else 0,
            ha="right" if len(groups) > 6 else "center",
        )
        # Every panel spans as many slots as the widest (equal bar widths, samples aligned); a lone average centred.
        first = (len(groups) - most_groups) / 2 if groups == ["average"] else 0.0
        ax.set_xlim(first - 0.6, first + most_groups - 0.4)
        ax.set_ylabel("\n".join(textwrap.wrap(name, 22)), fontsize=SMALL_FONT_PT + 1)
        ax.margins(y=0.2)
        if number == 0:
            ax.legend(title="modality", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=SMALL_FONT_PT)
        if groups != ["average"]:
            ax.set_xlabel("sample")
    fig.suptitle(_wrap(title, width), fontsize=FONT_PT + 1)
    return fig


def plot_contribution(
    samples: Sequence[str],
    modalities: Sequence[str],
    measures: Mapping[str, np.ndarray],
    path: str | Path,
    title: str,
    averages: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Save `build_contribution` as a PNG."""
    return save_figure(build_contribution(samples, modalities, measures, title, averages), path)

"""Deterministic synthetic text/image/audio dataset where fusion is needed to classify.

Design (all tables live in ``conf/sample/default.yaml``): ten classes; each modality
reveals only which of five *groups* (a pair of classes) a record belongs to, and the
three pairings differ, so one clean modality narrows the class to two candidates while
any two clean modalities identify it exactly:

* image: shape group ``c % 5``  -> pairs {0,5} {1,6} {2,7} {3,8} {4,9}
* audio: frequency band ``c // 2`` -> pairs {0,1} {2,3} {4,5} {6,7} {8,9}
* text:  keyword group table    -> pairs {0,3} {1,4} {2,5} {6,9} {7,8}

Each modality is independently missing (key null, p=m) or corrupt (present but
uninformative, p=k), else clean (p=q=1-m-k). Bayes-optimal accuracy, defaults m=0.10,
k=0.25 -> q=0.65 (exact values, including the all-missing re-draw, come from
:func:`bayes_optimal_accuracy`):

* one modality: clean -> 1/2 (two candidates), otherwise chance 1/10. Audio corruption
  is half pure noise, half a tone from a uniformly random band (undetectable, but it
  points to the right pair only 1/5 of the time, so it is still worth 1/10).
  acc = q/2 + (1-q)/10 = 0.325 + 0.035 = 0.360.
* two modalities (e.g. image+text, both corruptions detectable):
  both clean 1, exactly one clean 1/2, none 1/10:
  acc = q^2 + 2q(1-q)/2 + (1-q)^2/10 = 0.4225 + 0.2275 + 0.01225 = 0.662.
* three modalities: image+text both clean (q^2=0.4225) -> 1. Exactly one of them clean
  (2q(1-q)=0.455): a clean tone (0.65) breaks the tie -> 1; a random tone (0.125) ->
  1/5 right + 3/5 tie/2 = 1/2; no tone (0.225) -> 1/2; so 0.65 + 0.35/2 = 0.825.
  Neither clean (0.1225): audio alone -> 0.36.
  acc = 0.4225 + 0.455*0.825 + 0.1225*0.36 = 0.842.

So a perfect single-modality model gets ~36% and a perfect tri-modal model ~84%.

Other tasks (``sample.task``, which follows ``task.name`` in the composed config) keep the
modalities, states and rendering and change only what the groups mean:

* multilabel: the label is a set of 1..``multilabel.max_labels`` genres; genre g is group g of
  every modality. Each clean modality shows one genre of the set and every genre is shown by at
  least one modality, so all three clean modalities give the exact set; a missing or corrupt
  one may hide a genre (no Bayes-optimal figure is computed for it).
* regression: the label is ``sum(group_values[group of m])`` over the three modalities, each
  drawing its own group, plus Gaussian noise, clipped to ``regression.range`` ([-3, 3] as in
  CMU-MOSI). A clean modality reveals its third of the score (no Bayes figure either).
The multiclass output is byte-identical to what it was before tasks existed: the other tasks draw
from their own generator stream.

The package, one job a module, lower layers first: ``config`` (modality names, default class names, the
plain-dict view of a config) and ``rng`` (seeded streams); ``bayes`` (the Bayes-optimal figures);
``targets`` (what each task makes of the groups); ``image``, ``audio``, ``text`` (render and encode one
modality); ``validate`` (config checks); ``plan`` (latent factors of every record, and splits);
``summary`` (counts and their rendering); ``write`` (files, manifest and :func:`generate_sample`).
"""

from fusion.data.sample.audio import encode_audio, render_audio
from fusion.data.sample.bayes import bayes_optimal_accuracy
from fusion.data.sample.config import CLASS_NAMES, MODALITIES, SUBDIRS, class_names
from fusion.data.sample.image import encode_image, render_image
from fusion.data.sample.plan import plan_dataset, plan_record, record_id
from fusion.data.sample.summary import format_summary, summarize
from fusion.data.sample.text import render_text
from fusion.data.sample.validate import validate_config
from fusion.data.sample.write import generate_sample, write_record

__all__ = [
    "CLASS_NAMES",
    "MODALITIES",
    "SUBDIRS",
    "bayes_optimal_accuracy",
    "class_names",
    "encode_audio",
    "encode_image",
    "format_summary",
    "generate_sample",
    "plan_dataset",
    "plan_record",
    "record_id",
    "render_audio",
    "render_image",
    "render_text",
    "summarize",
    "validate_config",
    "write_record",
]

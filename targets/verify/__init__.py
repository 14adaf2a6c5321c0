"""Export verification: does the artifact detect and segment what the PyTorch model does?

Both models see the same images through the runtime's batch loop (``edgeseg.runtimes.pipeline.loop``:
letterbox → ``Backend.infer``) and its ``postprocess``: exactly the steps ``Runtime.predict``
takes, so any drift is the backend's. What is judged is what a user sees, against limits per
precision (``TOLERANCES``):

* detection agreement: the detections at ``conf`` are matched one to one (same class, box IoU ≥
  MATCH_IOU, greedy by IoU); agreement = matched / (matched + the larger of the reference's and
  the artifact's unmatched counts), summed over the images. Two kinds of unmatched detection are
  reported but not counted, by the same rules on both sides:

  - *borderline*: it scores within the precision's ``logit_margin`` above ``conf``, so the
    slightest output change moves it across the threshold;
  - *tied* (an NMS near-tie): the other side's outputs before NMS hold the same detection, an
    anchor whose box overlaps it (IoU ≥ MATCH_IOU) and whose score for its class lies within
    ``logit_margin`` of its score. Only NMS decided differently: near-equal overlapping boxes
    (an early model emits many) are kept in an order that the last bit of a score decides.
    Before that, a raw-output artifact is post-processed ``ranked_as_reference`` (its scores
    within the margin of the reference's take their value), so such ties rarely arise;

* box IoU and mask IoU (source resolution) of the matched detections: their mean and their 5th
  percentile, so that a few badly drifted objects fail as surely as a general drift;
* ΔmAP, when the images are labelled (a data YAML's val split): box and mask mAP50-95 of the
  artifact minus those of the reference on those images, from ``edgeseg.runtimes.evaluation.validate.evaluate``
  (the evaluation of ``Runtime.val``); a drop beyond ``map_drop`` fails;
* the artifact's outputs are finite.

Reported but not judged: the max abs output difference on a 0–1 scale (box rows of ``preds``
divided by the input width/height, class scores as they are, mask coefficients and ``protos``
divided by the reference's largest absolute value), and the score change of matched detections.
The largest single output difference says little: one background anchor of an int8 artifact can
move by 0.9 while every detection and the mAP stay put.

The parts: ``inputs`` (the images, labels and both models' outputs), ``compare`` (matching,
near-ties, IoUs, differences, mAP), ``judge`` (``TOLERANCES`` and ``verify``), ``report`` (the
text table and the JSON file). docs/verification.md explains the method to users.
"""

from edgeseg.targets.verify.compare import (
    CONF,
    MATCH_IOU,
    MIN_DETECTIONS,
    TOP_K,
    Candidates,
    borderline_score,
    compare_detections,
    iou_summary,
    match,
    ranked_as_reference,
    tied,
)
from edgeseg.targets.verify.inputs import MAX_IMAGES, VerificationSet, labelled_set, synthetic_images, verification_set
from edgeseg.targets.verify.judge import TOLERANCES, verify
from edgeseg.targets.verify.report import format_report, save_report

__all__ = [
    "CONF", "MATCH_IOU", "MAX_IMAGES", "MIN_DETECTIONS", "TOLERANCES", "TOP_K", "Candidates", "VerificationSet",
    "borderline_score", "compare_detections", "format_report", "iou_summary", "labelled_set", "match",
    "ranked_as_reference", "save_report", "synthetic_images", "tied", "verification_set", "verify",
]  # fmt: skip

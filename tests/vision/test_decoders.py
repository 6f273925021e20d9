"""Decoders on hand-built outputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from app.detection import iou, iou_many
from app.errors import ArtifactError, ConfigError
from app.vision.decoders import make_decoder
from app.vision.decoders.blazeface import VARIANTS, ssd_anchor_centres
from app.vision.decoders.nms import class_nms, nms, weighted_nms
from app.vision.preprocess import placement

IDENTITY_128 = placement(128, 128, 128, 128, "letterbox")  # frame == input: pixels = normalised * 128


# --- NMS -----------------------------------------------------------------------------------------
def test_iou_one_implementation_scalar_and_vectorised() -> None:
    boxes = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3]], np.float32)
    want = [1 / 3, 0.0, 1.0, 0.0]  # half overlap, disjoint, identical, zero-area
    assert iou_many(np.array([0, 0, 10, 10], np.float32), boxes) == pytest.approx(want)
    assert [iou((0.0, 0.0, 10.0, 10.0), tuple(b)) for b in boxes] == pytest.approx(want)
    assert iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0  # empty union


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.6, 0.9, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # IoU 0.68 is below 0.9: nothing suppressed


def test_class_nms_never_suppresses_across_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    keep = class_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]


def test_weighted_nms_averages_a_cluster_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [100, 100, 110, 110]], float)
    scores = np.array([0.75, 0.25, 0.6])
    out, s = weighted_nms(boxes, scores, 0.3)
    np.testing.assert_allclose(out[0], [0.5, 0, 10.5, 10])  # (0*.75 + 2*.25) / 1.0
    np.testing.assert_allclose(out[1], [100, 100, 110, 110])
    np.testing.assert_allclose(s, [0.75, 0.6])


# --- BlazeFace -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["short", "back"])
def test_anchors_follow_mediapipe(variant: str) -> None:
    a = ssd_anchor_centres(VARIANTS[variant])
    assert a.shape == (896, 2)
    # first feature map 16x16 with 2 anchors per cell, then 8x8 with 6 (three layers of the same stride)
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16])
    np.testing.assert_allclose(a[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def _blazeface_outputs(hits: dict[int, tuple[list[float], float]]) -> list[np.ndarray]:
    reg = np.zeros((1, 896, 16), np.float32)
    cls = np.full((1, 896, 1), -10.0, np.float32)
    for k, (raw, logit) in hits.items():
        reg[0, k, :4] = raw
        cls[0, k, 0] = logit
    return [reg, cls]


def test_blazeface_decodes_an_anchor_offset_box() -> None:
    dec = make_decoder("blazeface", ["face"], variant="short")
    # anchor 512: centre (8, 8) px in the 128 input; regress +4 px in x, 20x30 px box
    out = dec(_blazeface_outputs({512: ([4.0, 0.0, 20.0, 30.0], 3.0)}), IDENTITY_128)
    assert len(out) == 1
    assert out[0].label == "face"
    assert out[0].score == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    np.testing.assert_allclose(out[0].box, [2.0, 0.0, 22.0, 23.0], atol=1e-4)  # y0 = 8 - 15, clipped at 0


def test_blazeface_threshold_and_weighted_merge() -> None:
    dec = make_decoder("blazeface", ["face"], variant="short", score_threshold=0.5)
    # two anchors of the same cell (0 and 1, centre (4, 4) px) predict overlapping boxes, one weak far away
    hits = {
        0: ([60.0, 60.0, 40.0, 40.0], 2.0),
        1: ([64.0, 60.0, 40.0, 40.0], 2.0),
        300: ([0, 0, 10, 10], -2.0),
    }
    out = dec(_blazeface_outputs(hits), IDENTITY_128)
    assert len(out) == 1
    np.testing.assert_allclose(out[0].box, [46.0, 44.0, 86.0, 84.0], atol=1e-4)  # mean of x 44..84 and 48..88
    assert len(dec(_blazeface_outputs(hits), IDENTITY_128, score_threshold=0.05)) == 2
    assert dec(_blazeface_outputs(hits), IDENTITY_128, score_threshold=0.95) == []


def test_blazeface_rejects_wrong_outputs() -> None:
    dec = make_decoder("blazeface", ["face"])
    with pytest.raises(ArtifactError, match="blazeface"):
        dec([np.zeros((1, 100, 16)), np.zeros((1, 100, 1))], IDENTITY_128)


# --- SSD (TFLite_Detection_PostProcess) ---------------------------------------------------------
def _ssd(rows: list[tuple[list[float], int, float]], n: int = 10) -> list[np.ndarray]:
    boxes = np.zeros((1, n, 4), np.float32)
    classes = np.zeros((1, n), np.float32)
    scores = np.zeros((1, n), np.float32)
    for i, (b, c, s) in enumerate(rows):
        boxes[0, i], classes[0, i], scores[0, i] = b, c, s
    return [boxes, classes, scores, np.array([len(rows)], np.float32)]


def test_ssd_boxes_labels_and_count() -> None:
    labels = ["person", "bicycle", "car"]
    t = placement(640, 480, 300, 300, "stretch")
    outs = _ssd(
        [([0.25, 0.5, 0.75, 1.0], 2, 0.9), ([0, 0, 0.5, 0.5], 0, 0.3), ([0.1, 0.1, 0.2, 0.2], 1, 0.6)]
    )
    outs[2][0, 5] = 0.99  # beyond count: must be ignored
    dec = make_decoder("ssd", labels, score_threshold=0.5)
    got = dec(outs, t)
    assert [d.label for d in got] == ["car", "bicycle"]
    np.testing.assert_allclose(got[0].box, [320, 120, 640, 360], atol=1e-3)
    assert [d.label for d in make_decoder("ssd", labels, label_offset=-1)(outs, t)] == ["bicycle", "person"]


def test_ssd_output_order_option() -> None:
    b, c, s, n = _ssd([([0.0, 0.0, 0.5, 0.5], 0, 0.8)])
    dec = make_decoder("ssd", ["cat"], order=["scores", "boxes", "count", "classes"])
    got = dec([s, b, n, c], placement(100, 100, 100, 100, "stretch"))
    assert len(got) == 1 and got[0].label == "cat"
    np.testing.assert_allclose(got[0].box, [0, 0, 50, 50], atol=1e-4)


# --- YOLO ----------------------------------------------------------------------------------------
def test_yolo_v5_objectness_pixels_and_class_nms() -> None:
    labels = ["a", "b"]
    rows = np.array(
        [
            [32, 32, 16, 16, 0.9, 0.9, 0.1],  # a, 0.81
            [33, 32, 16, 16, 0.8, 0.9, 0.1],  # a, 0.72: suppressed by the first
            [33, 32, 16, 16, 0.9, 0.1, 0.8],  # b, 0.72: other class, kept
            [10, 10, 4, 4, 0.2, 0.9, 0.1],  # 0.18: below threshold
        ],
        np.float32,
    )[None]
    t = placement(128, 128, 64, 64, "stretch")  # frame twice the input size
    got = make_decoder("yolo", labels, score_threshold=0.25)([rows], t)
    assert [(d.label, round(d.score, 2)) for d in got] == [("a", 0.81), ("b", 0.72)]
    np.testing.assert_allclose(got[0].box, [48, 48, 80, 80], atol=1e-3)


def test_yolo_v8_transposed_normalised() -> None:
    labels = ["x", "y", "z"]
    cand = np.zeros((8, 4 + 3), np.float32)
    cand[3] = [0.5, 0.5, 0.2, 0.4, 0.0, 0.0, 0.7]
    out = cand.T[None]  # (1, 7, 8): v8 layout
    got = make_decoder("yolo", labels, normalized=True)([out], placement(100, 100, 640, 640, "stretch"))
    assert len(got) == 1 and got[0].label == "z"
    np.testing.assert_allclose(got[0].box, [40, 30, 60, 70], atol=1e-3)


# --- classify ------------------------------------------------------------------------------------
def test_classify_top_k_threshold_whole_frame() -> None:
    t = placement(640, 480, 224, 224, "stretch")
    scores = np.array([[0.05, 0.6, 0.1, 0.25]], np.float32)
    dec = make_decoder("classify", ["bg", "cat", "dog", "fox"], top_k=3, score_threshold=0.08)
    got = dec([scores], t)
    assert [d.label for d in got] == ["cat", "fox", "dog"]
    assert all(d.box == (0.0, 0.0, 640.0, 480.0) for d in got)
    assert [d.label for d in dec([scores], t, score_threshold=0.2)] == ["cat", "fox"]


def test_classify_softmax_of_logits() -> None:
    got = make_decoder("classify", ["a", "b"], top_k=1, softmax=True)(
        [np.array([[0.0, np.log(3.0)]])], IDENTITY_128
    )
    assert got[0].label == "b" and got[0].score == pytest.approx(0.75)


def test_make_decoder_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown decoder 'nope'"):
        make_decoder("nope", [])
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        make_decoder("blazeface", ["face"], colour="red")
    with pytest.raises(ConfigError, match="variant"):
        make_decoder("blazeface", ["face"], variant="long")


# --- MoveNet and the pose detector (hand-built outputs with a known answer) -------------------------
def test_movenet_box_spans_confident_keypoints_with_margin() -> None:
    dec = make_decoder("movenet", ["person"], keypoint_threshold=0.3, min_keypoints=5, margin=0.1)
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, :2] = 0.5  # unconfident keypoints sit in the middle
    ys = [0.25, 0.25, 0.75, 0.75, 0.5]
    xs = [0.25, 0.75, 0.25, 0.75, 0.5]
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        out[0, 0, k] = (y, x, 0.9)
    [person] = dec([out], IDENTITY_128)
    assert person.label == "person" and person.score == pytest.approx(0.9)
    np.testing.assert_allclose(person.box, (32 - 6.4, 32 - 6.4, 96 + 6.4, 96 + 6.4), atol=1e-3)
    assert len(person.keypoints) == 17 and person.keypoints[0].name == "nose"
    assert (person.keypoints[1].x, person.keypoints[1].y) == pytest.approx((96.0, 32.0))
    out[0, 0, 4, 2] = 0.1  # four confident keypoints are not a person
    assert dec([out], IDENTITY_128) == []


def test_blazepose_person_box_is_the_hip_centred_body_square() -> None:
    from app.vision.decoders.blazepose import POSE_DETECTOR_ANCHORS
    from app.vision.preprocess import placement

    dec = make_decoder("blazepose", ["person"], box_scale=1.0)
    anchors = ssd_anchor_centres(POSE_DETECTOR_ANCHORS)
    reg = np.zeros((1, len(anchors), 12), np.float32)
    cls = np.full((1, len(anchors), 1), -20.0, np.float32)
    k = 1000
    reg[0, k, 2:4] = 20.0  # a 20 px face box on the anchor
    ax, ay = anchors[k] * 224
    reg[0, k, 4:6] = (112 - ax, 120 - ay)  # hip centre at (112, 120) px in the 224 input
    reg[0, k, 6:8] = (112 - ax, 40 - ay)  # body extent point 80 px above it
    cls[0, k, 0] = 3.0
    [person] = dec([reg, cls], placement(224, 224, 224, 224, "letterbox"))
    assert person.score == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    np.testing.assert_allclose(person.box, (32, 40, 192, 200), atol=1e-3)  # side 2 * 80 around the hip centre
    assert [p.name for p in person.keypoints][:2] == ["hip_centre", "body_extent"]
    assert (person.keypoints[0].x, person.keypoints[0].y) == pytest.approx((112.0, 120.0), abs=1e-3)

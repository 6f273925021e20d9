"""The person detector (MediaPipe's pose detector) on Coral's photos, on every runtime it ships for.

A whole-person box: it holds a face BlazeFace finds on the same photo and is much taller than that face.
"""

from __future__ import annotations

import pytest

from app.detection import iou

PEOPLE = ("grace_hopper.bmp", "squat.bmp", "face.jpg")
NO_PEOPLE = ("cat.bmp", "parrot.jpg", "bird.bmp")
RUNTIMES = ("tflite", "executorch", "torchscript-lite")


@pytest.fixture(scope="module")
def faces(run_model, coral_photo) -> dict[str, list]:
    detect = run_model("blazeface-short", "tflite")
    return {name: detect(coral_photo(name)) for name in PEOPLE}


@pytest.fixture(scope="module")
def tflite_boxes(run_model, coral_photo) -> dict[str, list]:
    detect = run_model("person-detector", "tflite")
    return {name: detect(coral_photo(name)) for name in (*PEOPLE, *NO_PEOPLE)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_whole_person_on_people_and_nothing_elsewhere(
    runtime: str, run_model, coral_photo, faces, tflite_boxes
) -> None:
    detect = run_model("person-detector", runtime)
    for name in PEOPLE:
        found = detect(coral_photo(name))
        assert found and all(d.label == "person" for d in found), (runtime, name, found)
        best = found[0]
        assert best.score >= 0.5 and best.keypoints is not None and len(best.keypoints) == 4
        face_ok = []
        for face in faces[name]:
            cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
            inside = best.box[0] <= cx <= best.box[2] and best.box[1] <= cy <= best.box[3]
            taller = (best.box[3] - best.box[1]) >= 2.0 * (face.box[3] - face.box[1])
            face_ok.append(inside and taller)
        assert any(face_ok), (runtime, name, best, faces[name])
        if runtime != "tflite":  # the torch rebuilds find the same box as the original
            assert iou(best.box, tflite_boxes[name][0].box) >= 0.95, (runtime, name)
    for name in NO_PEOPLE:
        assert detect(coral_photo(name)) == [], (runtime, name)


def test_int8_tflite_finds_the_same_people(run_model, coral_photo, tflite_boxes) -> None:
    detect = run_model("person-detector", "tflite", artifact="tflite-int8")
    for name in PEOPLE:
        found = detect(coral_photo(name))
        assert found and iou(found[0].box, tflite_boxes[name][0].box) >= 0.8, (name, found)
    for name in NO_PEOPLE:
        assert detect(coral_photo(name)) == [], name

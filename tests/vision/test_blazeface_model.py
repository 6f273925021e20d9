"""BlazeFace decoder on the real MediaPipe models' output (LiteRT), real photos from scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.detection import iou
from app.runtimes.base import TensorSpec
from app.vision.decoders import make_decoder
from app.vision.preprocess import Preprocessor


class _Model:
    """The original .tflite through ai_edge_litert directly; outputs in graph order."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        self.index = d["index"]
        self.spec = TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), "float32")
        self.outs = [o["index"] for o in self.it.get_output_details()]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.it.set_tensor(self.index, x)
        self.it.invoke()
        return [self.it.get_tensor(i) for i in self.outs]


def _detect(path: Path, variant: str, image_bgr: np.ndarray) -> list:
    model = _Model(path)
    h, w = model.spec.hw
    pre = Preprocessor(model.spec, w, h)
    x, t = pre(image_bgr)
    return make_decoder("blazeface", ["face"], variant=variant)(model(x), t)


def test_short_finds_the_astronaut_face(
    blazeface_short_path: Path, astronaut_bgr: np.ndarray, astronaut_face
) -> None:
    dets = _detect(blazeface_short_path, "short", astronaut_bgr)
    assert len(dets) == 1
    assert dets[0].label == "face" and dets[0].score >= 0.5
    assert iou(dets[0].box, astronaut_face) >= 0.9


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_short_finds_no_face_in_other_photos(
    blazeface_short_path: Path, no_face_photos_bgr: dict[str, np.ndarray], name: str
) -> None:
    assert _detect(blazeface_short_path, "short", no_face_photos_bgr[name]) == []


def test_back_finds_the_astronaut_face(
    blazeface_back_path: Path, astronaut_bgr: np.ndarray, astronaut_face
) -> None:
    dets = _detect(blazeface_back_path, "back", astronaut_bgr)
    assert len(dets) == 1
    assert iou(dets[0].box, astronaut_face) >= 0.75  # the back model's boxes are looser (measured 0.82)


def test_face_found_where_the_frame_put_it(
    blazeface_short_path: Path, astronaut_bgr: np.ndarray, astronaut_face
) -> None:
    """A crop of the astronaut, enlarged 1.5x and pasted off-centre into a 640x480 frame: the box follows."""
    import cv2

    frame = np.zeros((480, 640, 3), np.uint8)
    crop = cv2.resize(astronaut_bgr[0:300, 80:380], (450, 450), interpolation=cv2.INTER_LINEAR)
    frame[15:465, 170:620] = crop
    x0, y0, x1, y1 = astronaut_face
    want = (170 + (x0 - 80) * 1.5, 15 + y0 * 1.5, 170 + (x1 - 80) * 1.5, 15 + y1 * 1.5)
    dets = _detect(blazeface_short_path, "short", frame)
    assert len(dets) == 1
    b = dets[0].box
    # where it is must follow the paste exactly; how big BlazeFace draws a face varies with its scale
    assert abs((b[0] + b[2]) / 2 - (want[0] + want[2]) / 2) < 6
    assert abs((b[1] + b[3]) / 2 - (want[1] + want[3]) / 2) < 6
    assert iou(b, want) >= 0.7

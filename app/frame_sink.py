"""Where each processed frame goes, on the pipeline's post thread: the event recorder (every frame, so
absence ends presence), the --output JSON Lines file, and the detections topic (frames without
detections only when `publish_empty`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.telemetry import contract

if TYPE_CHECKING:
    from app.controller import LiveSettings
    from app.events.recorder import EventRecorder
    from app.pipeline import FrameResult
    from app.results_jsonl import JsonlWriter
    from app.telemetry.mqtt import Telemetry


class FrameSink:
    """The pipeline's sink; its parts are attached by the service as they are built."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings
        self.telemetry: Telemetry | None = None
        self.events: EventRecorder | None = None
        self.results: JsonlWriter | None = None
        self.published = 0

    def __call__(self, result: FrameResult) -> None:
        if self.events is not None:
            self.events.on_frame(result)
        if self.results is not None:
            self.results.write(result)
        publish_empty = self.settings is not None and self.settings.publish_empty
        if self.telemetry is None or (not result.detections and not publish_empty):
            return
        self.published += 1
        self.telemetry.publish_detections(
            contract.detections_fields(
                ts=result.ts,
                frame=result.index,
                model=result.model,
                runtime=result.runtime,
                detections=[d.to_json() for d in result.detections],
                latency_ms=result.latency_ms,
            )
        )

    def close(self) -> None:
        """After the pipeline has drained: the output file flushed, every presence ended."""
        if self.results is not None:
            self.results.close()
        if self.events is not None:
            self.events.close()  # before telemetry flushes the spool

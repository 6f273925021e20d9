"""From detections to events: presence per label (presence.py), snapshots (snapshot.py), and the
recorder that turns pipeline frames into published events, presence and snapshots (recorder.py)."""

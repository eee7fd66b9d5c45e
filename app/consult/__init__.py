"""Video consultation: the waiting room, join tokens, the call page with the clinician's side panel,
consultation notes with revisions, and the call's audit trail. The real-time side is in signaling/."""

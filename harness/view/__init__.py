"""`harness view`: local pages that show what each model saw and said - a run's grid and failures, every sample
(images re-rendered and checked against their sha256, transcript, answers, scores) and every original/defaced pair.

The pages show face-bearing images: they are served on 127.0.0.1 only, or copied to a folder marked as a view
(marker.py), which `harness leaderboard publish` refuses. Nothing is fetched from outside the machine.
"""

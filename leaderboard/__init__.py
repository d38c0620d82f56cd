"""Leaderboard: run directories -> tables, plots and a static site (build), and publishing them (publish).

    from leaderboard import build, publish
    build(["runs/r1", "runs/r2"], "site")          # leaderboard.build documents the folder layout
    publish("site", "public/")                      # a folder: static site + data
    publish("site", "hf://datasets/owner/name")     # a Hugging Face dataset repo (Parquet + dataset card)
"""

from leaderboard.build import BuildResult, build
from leaderboard.publish import publish

__all__ = ["BuildResult", "build", "publish"]

"""Evaluation: DAVIS J/F, box benchmarks (OPE, VOT restart) and OpenCV baseline trackers."""

"""Side-by-side benchmarks of migrate against rclone, gcloud storage and raw floors: `python -m bench`."""

"""calibration-pipeline domain library: plain Python, no Dagster."""

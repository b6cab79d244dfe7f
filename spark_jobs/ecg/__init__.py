"""ECG preprocessing: WFDB reading, multi-lead R-peak detection and evaluation."""

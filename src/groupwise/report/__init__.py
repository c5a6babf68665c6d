"""`groupwise report`: a run's metrics as plots and one self-contained HTML page."""

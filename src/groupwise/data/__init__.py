"""Training data: built-in tasks, local files and hub datasets as rows; prompts; the training prompt stream."""

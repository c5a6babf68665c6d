"""`groupwise compare`: variants x seeds trained and evaluated on the same problems, with bootstrap intervals."""

"""tunesmith: instruction-tune a small LLM on your own data set and see honestly whether it helped."""

__version__ = "0.1.0"

"""Data stage: readers (bytes -> RawRecord), formats (RawRecord -> Conversation), prepare (dedup, split)."""

"""Search over any model that follows the incremental-decoding protocol."""

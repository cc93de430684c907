"""The encoder-decoder Transformer, one small module per part (plain torch.nn)."""

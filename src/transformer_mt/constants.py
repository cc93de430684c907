"""Special token ids shared by the tokenizer, the model and decoding.

Fixed so that a checkpoint, a prepared corpus and a SentencePiece model always agree.
"""

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3

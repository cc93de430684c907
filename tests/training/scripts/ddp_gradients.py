"""One update of TranslationModule under Lightning, written for a test to compare with a plain
one-batch reference: `python ddp_gradients.py <devices> <accumulate> <out.pt>`.

The four micro-batches of the global batch (of different target lengths) are dealt out to
the ranks in order; SGD with lr 1 makes the parameter change the negated gradient.
"""

import sys
from functools import partial

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.batching import Batch
from transformer_mt.training.module import TranslationModule

FIELDS = dict(src_vocab_size=40, tgt_vocab_size=40, d_model=16, d_ff=32, num_heads=2,
              num_encoder_layers=1, num_decoder_layers=1, dropout=0.0)  # fmt: skip


def micro_batches() -> list[Batch]:
    """Four batches of 2-5 pairs with target lengths 2 to 11 (very different token counts)."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for rows, length in ((2, 11), (5, 2), (3, 7), (4, 4)):
        src = torch.randint(4, 40, (rows, 6), generator=gen)
        src[:, -1] = EOS_ID
        tgt = torch.randint(4, 40, (rows, length), generator=gen)
        tgt[0, length // 2 :] = PAD_ID  # a shorter row
        tgt_in = torch.cat([torch.full((rows, 1), BOS_ID), tgt[:, :-1]], dim=1)
        tgt_out = tgt.clone()
        tgt_out[tgt_out.eq(PAD_ID).cumsum(1).eq(1) & tgt_out.eq(PAD_ID)] = EOS_ID
        batches.append(Batch(src, tgt_in, tgt_out, torch.arange(rows),
                             int(tgt_out.ne(PAD_ID).sum())))  # fmt: skip
    return batches


def initial_module() -> TranslationModule:
    torch.manual_seed(0)
    return TranslationModule(FIELDS, optimizer=partial(torch.optim.SGD, lr=1.0))


def main() -> None:
    devices, accumulate, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    module = initial_module()
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    strategy = DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_steps=1,
        accumulate_grad_batches=accumulate, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    share = len(micro_batches()) // devices
    rank = int(__import__("os").environ.get("LOCAL_RANK", 0))
    mine = micro_batches()[rank * share : (rank + 1) * share]
    trainer.fit(module, train_dataloaders=DataLoader(mine, batch_size=None))
    if trainer.global_rank == 0:
        after = module.model.state_dict()
        torch.save({k: before[k] - after[k] for k in before}, out)  # = the gradient (lr 1)


if __name__ == "__main__":
    main()

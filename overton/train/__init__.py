"""Training consumer: streaming loader, packing, GPT-J training loop, checkpoints (extra ``train``)."""

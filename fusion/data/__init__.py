"""The dataset contract, shard reading and the Lightning DataModule."""

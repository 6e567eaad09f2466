"""Load suite: rogue peers flooding the miner while honest ones keep being served."""

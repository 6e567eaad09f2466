"""Code shared by the miner and validator daemons (HTTP clients of each other's APIs)."""

from .base_miner import BaseMiner

"""elasticjob-launch: a torchrun-compatible elastic agent."""

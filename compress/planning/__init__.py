"""Latency-budget planning: the cuts a plan chooses from, their measured prices (the latency
table), and the choice. The `plan` stage (compress.stages.plan) runs it."""

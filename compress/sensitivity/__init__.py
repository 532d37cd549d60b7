"""How much each structural cut costs in accuracy and what it saves (`cuts`), how a MACs
budget is spread over the cuts (`allocation`), and the `compress analyze` table (`analyze`).
"""

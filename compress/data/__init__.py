"""Images: folders and classes (`folders`), transforms (`transforms`), the competition's
data YAML (`config`), and the train / evaluation splits a run works on (`training_data`).
"""

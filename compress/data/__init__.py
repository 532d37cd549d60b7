"""Images: reading one (`images`), folders and classes (`folders`), the decoded images shared
by every process on the machine (`cache`), transforms (`transforms`), the competition's data
YAML (`config`), and the train / evaluation splits a run works on (`training_data`).
"""

"""`compress search`: Optuna multi-objective search over the values of a recipe.

Each trial is one `compress run` of the recipe with the trial's values, in its own run
folder; its objectives are the final stage's val macro F1 (maximised) and its batch-1
latency as a fraction of the input's, timed interleaved (or its MACs), minimised.
The study lives in an Optuna storage: an SQLite file in the search folder by default, or a
PostgreSQL server that any number of `compress search` processes on any machines share.
Everything a Pareto recipe needs is kept in the storage, so any worker can write them.

Modules: `job` (the validated search), `storage` (Optuna's RDB storage), `study` (the
study and its workers), `objective` (one trial), `front` (the Pareto front's files).
"""
